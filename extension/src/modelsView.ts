import { Dialog, showDialog } from '@jupyterlab/apputils';

import { h, link, replace, svg } from './dom';
import { CellopsApiError, conditionText, IPanelMessage, messageFor } from './errors';
import { formatPercent, formatTime } from './format';
import { modelVersionUrl } from './links';
import {
  decisionText,
  rolloutClass,
  ruleLines,
  showsRollout,
  splitText,
  variantTable,
  windowText
} from './rollout';
import { sparkline } from './sparkline';
import { ICondition, IDriftCheck, IGate, IModel, IRolloutStatus } from './types';

export interface IModelActions {
  promote(model: string, version: string): Promise<unknown>;
  rollback(model: string): Promise<unknown>;
  /** called after an action moved an alias: the panel refreshes */
  changed(): void;
}

/** The result of the last Promote / Roll back of a model, shown under it until the next. */
interface IOutcome {
  ok: boolean;
  text: string;
  conditions?: ICondition[];
}

/**
 * The models the notebook registered: versions, aliases, each version's last gate result,
 * and Promote / Roll back behind a confirmation.
 */
export class ModelsView {
  readonly node = h('div', { class: 'cellops-section cellops-models' });

  constructor(private readonly _actions: IModelActions) {}

  render(models: IModel[], uiUrl: string): void {
    if (!models.length) {
      replace(
        this.node,
        h('h3', {}, 'Models'),
        h(
          'p',
          { class: 'cellops-empty' },
          'No model registered by this notebook yet: `cellops.register_model(model, "NAME", X)` in a step registers one.'
        )
      );
      return;
    }
    replace(
      this.node,
      h('h3', {}, 'Models'),
      models.map(model => this._model(model, uiUrl))
    );
  }

  private _model(model: IModel, uiUrl: string): HTMLElement {
    const champion = model.aliases['champion'] ?? null;
    const challenger = model.aliases['challenger'] ?? null;
    const rows = model.versions.map(version => {
      const isChampion = version.version === champion;
      const promote = isChampion
        ? null
        : h(
            'button',
            {
              class: 'jp-mod-styled cellops-promote',
              'data-version': version.version,
              title: `Move @champion to version ${version.version} if the gate passes`,
              onclick: () => void this._promote(model.name, version.version, champion)
            },
            'Promote'
          );
      const name = `v${version.version}`;
      return h(
        'li',
        {
          'data-version': version.version,
          class: `cellops-version${version.version === challenger ? ' cellops-challenger' : ''}`
        },
        h(
          'div',
          { class: 'cellops-version-head' },
          h(
            'strong',
            {},
            uiUrl ? link(name, modelVersionUrl(uiUrl, model.name, version.version)) : name
          ),
          h('span', { class: 'cellops-aliases' }, version.aliases.map(a => `@${a}`).join(' ')),
          h('span', { class: 'cellops-muted' }, formatTime(version.created)),
          promote
        ),
        gateView(version.gate)
      );
    });
    const rollback = champion
      ? h(
          'button',
          {
            class: 'jp-mod-styled cellops-rollback',
            title: 'Move @champion back to the version it had before',
            onclick: () => void this._rollback(model.name, champion)
          },
          'Roll back'
        )
      : null;
    const outcome = this._outcomes.get(model.name);
    return h(
      'div',
      { class: 'cellops-model', 'data-model': model.name },
      h(
        'div',
        { class: 'cellops-model-head' },
        h('strong', {}, model.name),
        h(
          'span',
          { class: 'cellops-model-aliases' },
          champion ? ` champion v${champion}` : ' no champion',
          challenger ? `, challenger v${challenger}` : ''
        ),
        rollback
      ),
      showsRollout(model.rollout) ? rolloutView(model.rollout) : null,
      h('ul', { class: 'cellops-versions' }, rows),
      outcome ? outcomeView(outcome) : null
    );
  }

  private async _promote(model: string, version: string, champion: string | null) {
    const result = await showDialog({
      title: `Promote ${model} v${version}?`,
      body:
        `@champion moves ${champion ? `from v${champion} ` : ''}to v${version} if the ` +
        "model's gate passes; the move is written to the audit trail.",
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Promote' })]
    });
    if (!result.button.accept) {
      return;
    }
    await this._act(model, () => this._actions.promote(model, version));
  }

  private async _rollback(model: string, champion: string) {
    const result = await showDialog({
      title: `Roll back ${model}?`,
      body: `@champion (now v${champion}) moves back to the version it had before.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Roll back' })]
    });
    if (!result.button.accept) {
      return;
    }
    await this._act(model, () => this._actions.rollback(model));
  }

  private async _act(model: string, action: () => Promise<unknown>) {
    try {
      const moved = (await action()) as { version?: string; previous?: string | null };
      const from = moved.previous ? `v${moved.previous}` : 'none';
      this._outcomes.set(model, { ok: true, text: `@champion: ${from} \u2192 v${moved.version}` });
    } catch (error) {
      const message: IPanelMessage = messageFor(error);
      this._outcomes.set(model, {
        ok: false,
        text: `${message.title}${message.text ? `: ${message.text}` : ''}`,
        conditions: error instanceof CellopsApiError ? message.conditions : undefined
      });
    }
    this._actions.changed();
  }

  private _outcomes = new Map<string, IOutcome>();
}

function gateView(gate: IGate | null): HTMLElement {
  if (!gate) {
    return h('div', { class: 'cellops-muted cellops-gate' }, 'gate: not checked yet');
  }
  return h(
    'details',
    { class: `cellops-gate ${gate.passed ? 'cellops-gate-passed' : 'cellops-gate-failed'}` },
    h('summary', {}, gate.passed ? 'gate \u2714 passed' : 'gate \u2716 refused'),
    conditionsList(gate.conditions)
  );
}

export function conditionsList(conditions: ICondition[]): HTMLElement {
  return h(
    'ul',
    { class: 'cellops-conditions' },
    conditions.map(c =>
      h(
        'li',
        { class: c.passed ? 'cellops-condition-passed' : 'cellops-condition-failed' },
        `${c.passed ? '\u2714' : '\u2716'} ${conditionText(c)}`
      )
    )
  );
}

/** The model's rollout: the split, a row per variant, the rules on the window, the last
 * decision (the text is rollout.ts's). */
export function rolloutView(status: IRolloutStatus): HTMLElement {
  const table = variantTable(status);
  const rules = ruleLines(status.rules);
  const last = status.last_decision;
  return h(
    'div',
    { class: `cellops-rollout ${rolloutClass(status)}`, 'data-model': status.model },
    h('div', { class: 'cellops-rollout-split' }, splitText(status)),
    table.rows.length
      ? h(
          'table',
          { class: 'cellops-rollout-variants' },
          h('thead', {}, h('tr', {}, table.columns.map(c => h('th', {}, c)))),
          h(
            'tbody',
            {},
            table.rows.map(row => h('tr', {}, row.map(cell => h('td', {}, cell))))
          )
        )
      : status.active
        ? h('div', { class: 'cellops-muted' }, 'no traffic served yet')
        : null,
    rules.length
      ? h(
          'div',
          { class: 'cellops-rollout-rules' },
          h('div', { class: 'cellops-muted' }, windowText(status)),
          h(
            'ul',
            {},
            rules.map(rule =>
              h('li', { class: rule.className, title: rule.status }, `${rule.icon} ${rule.text}`)
            )
          )
        )
      : null,
    last
      ? h('div', { class: 'cellops-rollout-decision' }, `last decision: ${decisionText(last)}`)
      : null
  );
}

function outcomeView(outcome: IOutcome): HTMLElement {
  return h(
    'div',
    { class: `cellops-outcome ${outcome.ok ? 'cellops-ok' : 'cellops-refused'}` },
    h('div', {}, outcome.text),
    outcome.conditions ? conditionsList(outcome.conditions) : null
  );
}

/** The champion's latest drift check, and the share of drifted columns over its checks. */
export function driftView(model: string, checks: IDriftCheck[]): HTMLElement {
  const latest = checks[checks.length - 1];
  const shares = checks.map(c => c.share);
  const width = 160;
  const height = 32;
  const line = sparkline(shares, width, height, null);
  const chart = svg(
    'svg',
    {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      class: 'cellops-sparkline',
      role: 'img',
      'aria-label': `drift share over ${checks.length} checks`
    },
    line.points
      ? svg('polyline', { points: line.points, fill: 'none', class: 'cellops-spark-line' })
      : null,
    line.last
      ? svg('circle', { cx: line.last.x, cy: line.last.y, r: 2.5, class: 'cellops-spark-last' })
      : null
  );
  return h(
    'div',
    { class: 'cellops-drift-model', 'data-model': model, 'data-shares': shares.join(',') },
    h('strong', {}, `${model} v${latest.version}`),
    h(
      'div',
      { class: latest.dataset_drift ? 'cellops-drifted' : 'cellops-no-drift' },
      `${latest.dataset_drift ? 'DRIFT' : 'no dataset drift'}: ` +
        `${formatPercent(latest.share)} of columns drifted` +
        (latest.drifted_columns.length ? ` (${latest.drifted_columns.join(', ')})` : '') +
        ` \u00b7 ${formatTime(latest.time)}`
    ),
    chart
  );
}
