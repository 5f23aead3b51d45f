/**
 * The answers of the cellops_lab server extension (routes under `<base_url>cellops/api/`).
 */

export type StepState = 'fresh' | 'cached' | 'stale' | 'failed' | 'never_run';

export interface IStep {
  name: string;
  cell: number;
  cell_id: string | null;
  state: StepState;
  reason: string | null;
  duration_s: number | null;
  metrics: { [name: string]: number };
  run_id: string | null;
  run_url: string | null;
}

export interface IStepsReply {
  notebook: string;
  loaded: boolean;
  hint: string | null;
  store: string;
  ui_url: string | null;
  steps: IStep[];
}

export interface IRun {
  run_id: string;
  name: string;
  status: string;
  start_time: string;
  url: string | null;
}

export interface ICondition {
  text: string;
  left: number | null;
  right: number | null;
  passed: boolean;
}

export interface IGate {
  passed: boolean;
  conditions: ICondition[];
}

export interface IModelVersion {
  version: string;
  run_id: string | null;
  created: string;
  aliases: string[];
  gate: IGate | null;
}

/** One variant's served traffic (null where there is no value yet). */
export interface IVariantMetrics {
  requests: number;
  errors: number;
  error_rate: number | null;
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  latency_p99_ms: number | null;
  agreement?: number | null;
  dropped?: number;
}

export interface IRolloutRule {
  condition: string;
  status: 'pass' | 'FAIL' | 'waiting' | 'skipped';
  sides: string;
}

/** The last decision on the rollout: started, widened, promoted, aborted, rolled back... */
export interface IRolloutDecision {
  action: string;
  at: string;
  by: string | null;
  from?: number;
  to?: number;
  reason?: string;
  window?: number;
  rules?: { rule: string; sides: string }[];
}

/** What `cellops.serving.status.rollout_status` says about a model's rollout. */
export interface IRolloutStatus {
  model: string;
  active: boolean;
  rollout: {
    id: string;
    mode: 'canary' | 'shadow';
    status: string;
    share: number;
    champion: string;
    challenger: string;
    started: string;
    by: string;
    revision: number;
  } | null;
  split: { [variant: string]: number | string } | null;
  variants: { [variant: string]: IVariantMetrics };
  window: { index: number; seconds: number; variants: { [variant: string]: IVariantMetrics } } | null;
  rules: IRolloutRule[];
  min_requests: number;
  schedule: number[];
  last_decision: IRolloutDecision | null;
}

export interface IModel {
  name: string;
  aliases: { [alias: string]: string };
  versions: IModelVersion[];
  /** null: no rollout was ever started (or its state could not be read) */
  rollout?: IRolloutStatus | null;
}

export interface IAliasMove {
  model: string;
  alias: string;
  version: string;
  previous: string | null;
}

export interface IDriftCheck {
  run_id: string;
  time: string;
  version: string;
  share: number;
  dataset_drift: boolean;
  drifted_columns: string[];
}

export interface IParameter {
  name: string;
  value: unknown;
  type: string;
}

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed';

export interface IJob {
  id: string;
  notebook: string;
  status: JobStatus;
  parameters: { [name: string]: unknown };
  progress: { done: number; total: number } | null;
  message: string | null;
  run_id: string | null;
  url: string | null;
  started: string | null;
  finished: string | null;
}

/** The JSON body of an error answer. */
export interface IErrorBody {
  status?: number;
  message?: string;
  uri?: string;
  conditions?: ICondition[];
  [extra: string]: unknown;
}
