import { ServerConnection } from '@jupyterlab/services';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { h, link, replace } from './dom';
import { IPanelMessage, messageFor, notLoadedMessage } from './errors';
import { formatDuration, formatMetrics } from './format';
import { JobsView } from './jobsView';
import { runLink } from './links';
import { driftView, ModelsView, conditionsList } from './modelsView';
import { NotebookSteps } from './notebook';
import { requestAPI, segment } from './request';
import { Refresher } from './schedule';
import { badgeFor } from './state';
import { IAliasMove, IDriftCheck, IJob, IModel, IParameter, IStep } from './types';

export interface IPanelSettings {
  intervalMs: number;
  /** the MLflow UI URL of the settings ('' for the server's) */
  uiUrl: string;
}

/** Backoff stops growing at this many poll intervals. */
const MAX_BACKOFF_FACTOR = 16;
/** The whole panel refreshes this long after the last cell that finished. */
const AFTER_RUN_MS = 800;

/**
 * The cellops side panel for the active notebook: its steps, the models it registered with
 * their gate and aliases, the champion's drift, and its jobs. It refreshes when a cell of the
 * notebook ran (through the notebook's `NotebookSteps`) and on a slow poll that backs off on
 * failures and pauses while the page or the panel is hidden.
 */
export class CellopsPanel extends Widget {
  constructor(
    private readonly _serverSettings: ServerConnection.ISettings,
    settings: IPanelSettings
  ) {
    super();
    this.id = 'cellops-panel';
    this.addClass('cellops-panel');
    this.title.caption = 'cellops: steps, models, drift and jobs of this notebook';
    this._settings = settings;
    this._models = new ModelsView({
      // the notebook's path picks its project's registry
      promote: (model, version) =>
        this._post(`models/${segment(model)}/promote`, { version, path: this._steps?.path }),
      rollback: model =>
        this._post(`models/${segment(model)}/rollback`, { path: this._steps?.path }),
      changed: () => void this.refresh().catch(() => undefined)
    });
    this._jobs = new JobsView({
      start: parameters =>
        this._post<IJob>('jobs', { path: this._steps?.path, parameters }),
      changed: () => void this.refresh().catch(() => undefined)
    });
    const refresh = h(
      'button',
      {
        class: 'jp-mod-styled cellops-refresh',
        title: 'Ask the server again now',
        onclick: () => void this.refresh().catch(() => undefined)
      },
      'Refresh'
    );
    this.node.append(
      h('div', { class: 'cellops-header' }, this._heading, refresh),
      this._banner,
      this._hint,
      this._stepsNode,
      this._models.node,
      this._driftNode,
      this._jobs.node
    );
    this._refresher = new Refresher({
      refresh: () => this.refresh(),
      intervalMs: settings.intervalMs,
      maxMs: settings.intervalMs * MAX_BACKOFF_FACTOR,
      isHidden: () => document.visibilityState === 'hidden' || !this.isVisible,
      isActive: () => this._jobsRunning
    });
    document.addEventListener('visibilitychange', this._onVisibility);
    this._renderAll();
  }

  get refresher(): Refresher {
    return this._refresher;
  }

  configure(settings: IPanelSettings): void {
    this._settings = settings;
    this._refresher.intervalMs = settings.intervalMs;
    this._renderSteps();
  }

  /** Follow another notebook (null: none is active). */
  setNotebook(steps: NotebookSteps | null): void {
    if (steps === this._steps) {
      return;
    }
    this._steps?.changed.disconnect(this._onSteps, this);
    this._steps?.executed.disconnect(this._onExecuted, this);
    this._steps = steps;
    this._steps?.changed.connect(this._onSteps, this);
    this._steps?.executed.connect(this._onExecuted, this);
    this._modelsData = [];
    this._jobsData = [];
    this._drift = new Map();
    this._parameters = null;
    this._parametersFor = null;
    this._error = null;
    this._renderAll();
    void this._refresher.refreshNow();
  }

  /** Put the focus on the "Run as job" form. */
  focusJobForm(): void {
    this._jobs.focus();
  }

  /** Ask the server for everything the panel shows; rejects when some of it failed. */
  async refresh(): Promise<void> {
    const steps = this._steps;
    if (!steps) {
      return;
    }
    const path = steps.path;
    const query = { path };
    const errors: unknown[] = [];
    const fail = (error: unknown) => {
      errors.push(error);
    };
    const ask = <T>(route: string, q: { [k: string]: string } = query) =>
      requestAPI<T>(route, this._serverSettings, {}, q);
    const wantParameters = this._parametersFor !== path;
    const [, models, jobs, parameters] = await Promise.all([
      steps.refresh().catch(fail),
      ask<{ models: IModel[] }>('models').catch(fail),
      ask<{ jobs: IJob[] }>('jobs').catch(fail),
      wantParameters
        ? ask<{ parameters: IParameter[] }>('parameters').catch(error => {
            this._parameterError = messageFor(error);
            return undefined;
          })
        : Promise.resolve(undefined)
    ]);
    const drift = new Map<string, IDriftCheck[]>();
    const champions = (models ? models.models : this._modelsData).filter(
      m => m.aliases['champion']
    );
    await Promise.all(
      champions.map(model =>
        ask<{ checks: IDriftCheck[] }>(`models/${segment(model.name)}/drift`)
          .then(answer => drift.set(model.name, answer.checks))
          .catch(fail)
      )
    );
    if (steps !== this._steps || this.isDisposed) {
      return; // another notebook became active meanwhile
    }
    if (models) {
      this._modelsData = models.models;
    }
    if (jobs) {
      this._jobsData = jobs.jobs;
    }
    if (parameters) {
      this._parameters = parameters.parameters;
      this._parametersFor = path;
      this._parameterError = null;
    }
    this._drift = drift;
    this._error = errors.length ? errors[0] : (steps.error ?? null);
    this._renderAll();
    if (this._error) {
      throw this._error;
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    document.removeEventListener('visibilitychange', this._onVisibility);
    this._refresher.dispose();
    clearTimeout(this._afterRun);
    this._steps?.changed.disconnect(this._onSteps, this);
    this._steps?.executed.disconnect(this._onExecuted, this);
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._refresher.wake();
  }

  private get _jobsRunning(): boolean {
    return this._jobsData.some(job => job.status === 'queued' || job.status === 'running');
  }

  private _post<T = IAliasMove>(route: string, body: unknown): Promise<T> {
    return requestAPI<T>(route, this._serverSettings, {
      method: 'POST',
      body: JSON.stringify(body)
    });
  }

  private _onVisibility = () => {
    if (document.visibilityState === 'visible') {
      this._refresher.wake();
    }
  };

  private _onExecuted(): void {
    // models, jobs and drift a cell may have changed (it registered a model, say): once the
    // cells stop finishing for a moment, so a "run all" asks once
    clearTimeout(this._afterRun);
    this._afterRun = setTimeout(
      () => void this._refresher.refreshNow(),
      AFTER_RUN_MS
    );
  }

  private _onSteps(): void {
    // an answer to a refresh the notebook made itself (a cell ran, an edit)
    this._renderHeader();
    this._renderSteps();
  }

  private _uiUrl(): string {
    return this._settings.uiUrl;
  }

  private _renderAll(): void {
    this._renderHeader();
    this._renderSteps();
    this._models.render(this._modelsData, this._uiUrl());
    this._renderDrift();
    this._jobs.render(this._jobsData);
    if (this._steps) {
      const problem = this._parameterError;
      this._jobs.setParameters(
        this._steps.path,
        this._parameters,
        problem ? `${problem.title}: ${problem.text}` : ''
      );
    }
  }

  private _renderHeader(): void {
    const steps = this._steps;
    if (!steps) {
      replace(this._heading, h('span', { class: 'cellops-muted' }, 'cellops'));
      replace(
        this._banner,
        h('div', { class: 'cellops-info' }, 'Open a notebook to see its cellops steps, models and jobs.')
      );
      this._banner.dataset.kind = 'none';
      return;
    }
    const reply = steps.reply;
    replace(
      this._heading,
      h('div', { class: 'cellops-notebook' }, steps.path),
      reply ? h('div', { class: 'cellops-store cellops-muted' }, `store: ${reply.store}`) : null
    );
    const error = this._error ?? steps.error;
    if (error) {
      const message = messageFor(error, this._refresher.scheduledDelay);
      this._banner.dataset.kind = message.kind;
      replace(this._banner, messageView(message));
    } else {
      this._banner.dataset.kind = '';
      replace(this._banner);
    }
    if (reply && !reply.loaded) {
      replace(this._hint, messageView(notLoadedMessage(reply.hint)));
    } else {
      replace(this._hint);
    }
  }

  private _renderSteps(): void {
    const reply = this._steps?.reply;
    if (!this._steps || !reply) {
      replace(this._stepsNode);
      return;
    }
    if (!reply.steps.length) {
      replace(
        this._stepsNode,
        h('h3', {}, 'Steps'),
        h('p', { class: 'cellops-empty' }, 'No steps yet: mark a cell with %%step NAME and run it.')
      );
      return;
    }
    const uiUrl = this._uiUrl();
    replace(
      this._stepsNode,
      h('h3', {}, 'Steps'),
      h(
        'ul',
        { class: 'cellops-steps' },
        reply.steps.map(step => this._stepRow(step, uiUrl))
      )
    );
  }

  /** One step: state and name, then duration, metrics and run id, then why it is stale. */
  private _stepRow(step: IStep, uiUrl: string): HTMLElement {
    const badge = badgeFor(step);
    const url = runLink(step.run_id, step.run_url, uiUrl);
    const runId = step.run_id ? link(step.run_id.slice(0, 8), url, 'cellops-run-id') : null;
    if (runId && step.run_id) {
      runId.title = `run ${step.run_id}${url ? ' (opens MLflow)' : ''}`;
      runId.dataset.runId = step.run_id;
    }
    const name = h(
      'a',
      {
        href: '#',
        class: 'cellops-step-name',
        title: 'Go to the cell',
        onclick: (event: Event) => {
          event.preventDefault();
          this._goToCell(step);
        }
      },
      step.name
    );
    return h(
      'li',
      { 'data-step': step.name, 'data-state': badge.state, class: `cellops-step-row ${badge.className}` },
      h(
        'div',
        { class: 'cellops-step-head' },
        h(
          'span',
          { class: 'cellops-state', title: badge.tooltip },
          h('span', { class: 'cellops-state-icon' }, badge.icon),
          ` ${badge.label}`
        ),
        name,
        h('span', { class: 'cellops-duration cellops-muted' }, formatDuration(step.duration_s))
      ),
      h(
        'div',
        { class: 'cellops-step-detail' },
        h('span', { class: 'cellops-metrics' }, formatMetrics(step.metrics || {})),
        h('span', { class: 'cellops-run' }, runId)
      ),
      step.reason ? h('div', { class: 'cellops-why' }, step.reason) : null
    );
  }

  private _goToCell(step: IStep): void {
    const panel = this._steps?.panel;
    if (!panel) {
      return;
    }
    const cells = this._steps!.liveCells();
    let index = step.cell_id ? cells.findIndex(c => c.id === step.cell_id) : -1;
    if (index < 0) {
      index = step.cell;
    }
    if (index >= 0 && index < panel.content.widgets.length) {
      panel.content.activeCellIndex = index;
      void panel.content.scrollToItem(index);
    }
  }

  private _renderDrift(): void {
    const entries = Array.from(this._drift.entries()).filter(([, checks]) => checks.length);
    if (!entries.length) {
      replace(this._driftNode);
      return;
    }
    replace(
      this._driftNode,
      h('h3', {}, 'Drift (champion)'),
      entries.map(([model, checks]) => driftView(model, checks))
    );
  }

  private _afterRun: ReturnType<typeof setTimeout> | undefined = undefined;
  private _settings: IPanelSettings;
  private _steps: NotebookSteps | null = null;
  private _refresher: Refresher;
  private _models: ModelsView;
  private _jobs: JobsView;
  private _modelsData: IModel[] = [];
  private _jobsData: IJob[] = [];
  private _drift = new Map<string, IDriftCheck[]>();
  private _parameters: IParameter[] | null = null;
  private _parametersFor: string | null = null;
  private _parameterError: IPanelMessage | null = null;
  private _error: unknown = null;
  private _heading = h('div', { class: 'cellops-heading' });
  private _banner = h('div', { class: 'cellops-banner', role: 'alert' });
  private _hint = h('div', { class: 'cellops-hint' });
  private _stepsNode = h('div', { class: 'cellops-section cellops-steps-section' });
  private _driftNode = h('div', { class: 'cellops-section cellops-drift' });
}

function messageView(message: IPanelMessage): HTMLElement {
  return h(
    'div',
    { class: `cellops-message cellops-message-${message.kind}` },
    h('strong', {}, message.title),
    message.text ? h('div', {}, message.text) : null,
    message.conditions ? conditionsList(message.conditions) : null
  );
}
