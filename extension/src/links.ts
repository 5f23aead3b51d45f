/**
 * Links into MLflow's UI, as cellops's own (magics/cellops/store/links.py): the UI is a hash
 * router, `#/runs/ID` finds a run's experiment, and `workflowType=machine_learning` opens the
 * runs pages rather than MLflow 3's GenAI overview.
 */

const WORKFLOW = 'workflowType=machine_learning';

function route(path: string): string {
  return `#${path}?${WORKFLOW}`;
}

export function runUrl(base: string, runId: string): string {
  return `${trimBase(base)}/${route(`/runs/${encodeURIComponent(runId)}`)}`;
}

export function modelVersionUrl(base: string, model: string, version: string): string {
  const path = `/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}`;
  return `${trimBase(base)}/${route(path)}`;
}

function trimBase(base: string): string {
  return base.trim().replace(/\/+$/, '');
}

/**
 * Where a run id links: the MLflow UI URL of the settings wins over the server's; without a
 * setting, the server's own link (it knows the experiment); else no link.
 */
export function runLink(
  runId: string | null,
  serverUrl: string | null,
  settingBase: string
): string | null {
  if (!runId) {
    return null;
  }
  if (settingBase.trim() !== '') {
    return runUrl(settingBase, runId);
  }
  return serverUrl || null;
}
