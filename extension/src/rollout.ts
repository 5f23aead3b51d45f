/**
 * How a model's rollout reads in the panel: the split, a row per variant, the rules on the
 * current window and the last decision. Pure functions of the server's `rollout` field (what
 * `cellops rollout MODEL` prints), tested without a browser; modelsView.ts puts them in the DOM.
 */
import { formatNumber, formatTime } from './format';
import { IRolloutDecision, IRolloutRule, IRolloutStatus, IVariantMetrics } from './types';

/** Variants in the order they are shown: the champion first. */
const ORDER = ['champion', 'canary', 'shadow'];

/** Whether the model's rollout is worth a block: one runs, or one ended with a decision. */
export function showsRollout(status: IRolloutStatus | null | undefined): status is IRolloutStatus {
  return !!status && !!status.rollout && (status.active || !!status.last_decision);
}

/** "canary 10% → v4, 90% → v3 (champion)", "shadow of v4: v3 answers every request", or how
 * the last rollout ended. */
export function splitText(status: IRolloutStatus): string {
  const rollout = status.rollout;
  if (!rollout) {
    return 'no rollout';
  }
  const { mode, share, champion, challenger } = rollout;
  if (!status.active) {
    return `last rollout: ${mode} of v${challenger}, ${rollout.status}`;
  }
  if (mode === 'shadow') {
    return `shadow of v${challenger}: v${champion} answers every request`;
  }
  return `canary ${share}% \u2192 v${challenger}, ${100 - share}% \u2192 v${champion} (champion)`;
}

/** A share in [0, 1] as a percentage with three significant digits ('–' when unknown). */
export function formatRate(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !isFinite(rate)) {
    return '\u2013';
  }
  return `${Number((rate * 100).toPrecision(3))}%`;
}

export function formatMs(ms: number | null | undefined): string {
  const text = formatNumber(ms);
  return ms === null || ms === undefined ? text : `${text} ms`;
}

export interface IVariantTable {
  columns: string[];
  rows: string[][];
}

/** Requests, error rate, p95 latency (and agreement with the champion for a shadow) of each
 * variant since the rollout started, every worker. */
export function variantTable(status: IRolloutStatus): IVariantTable {
  const names = Object.keys(status.variants).sort(
    (a, b) => rank(a) - rank(b) || a.localeCompare(b)
  );
  const shadow =
    status.rollout?.mode === 'shadow' ||
    names.some(name => status.variants[name].agreement !== undefined);
  const columns = ['variant', 'requests', 'error rate', 'p95 latency'];
  if (shadow) {
    columns.push('agreement');
  }
  const rows = names.map(name => {
    const m: IVariantMetrics = status.variants[name];
    const row = [
      variantLabel(status, name),
      String(m.requests ?? 0),
      formatRate(m.error_rate),
      formatMs(m.latency_p95_ms)
    ];
    if (shadow) {
      row.push(name === 'champion' ? '' : formatRate(m.agreement));
    }
    return row;
  });
  return { columns, rows };
}

function rank(variant: string): number {
  const found = ORDER.indexOf(variant);
  return found < 0 ? ORDER.length : found;
}

function variantLabel(status: IRolloutStatus, variant: string): string {
  const rollout = status.rollout;
  if (!rollout) {
    return variant;
  }
  const version = variant === 'champion' ? rollout.champion : rollout.challenger;
  return `${variant} v${version}`;
}

export interface IRuleLine {
  status: string;
  icon: string;
  className: string;
  text: string;
}

const RULE_ICONS: { [status: string]: string } = {
  pass: '\u2714',
  FAIL: '\u2716',
  waiting: '\u2026',
  skipped: '\u2013'
};

/** Each rule's status on the current window, with both sides as the server judged them. */
export function ruleLines(rules: IRolloutRule[]): IRuleLine[] {
  return rules.map(rule => ({
    status: rule.status,
    icon: RULE_ICONS[rule.status] ?? '?',
    className: `cellops-rule-${rule.status.toLowerCase()}`,
    text: `${rule.condition}${rule.sides ? ` (${rule.sides})` : ''}`
  }));
}

/** "on the current window (60 s, at least 50 requests a variant)" */
export function windowText(status: IRolloutStatus): string {
  const seconds = status.window ? `${formatNumber(status.window.seconds)} s, ` : '';
  return `rules on the current window (${seconds}at least ${status.min_requests} requests a variant)`;
}

/** "rolled back 10% → 0% · 2025-01-02 10:00 by cellops serve: canary.error_rate <= … (…)" */
export function decisionText(
  decision: IRolloutDecision,
  time: (iso: string) => string = formatTime
): string {
  let text = decision.action;
  if (decision.from !== undefined && decision.to !== undefined) {
    text += ` ${decision.from}% \u2192 ${decision.to}%`;
  } else if (decision.to) {
    text += ` at ${decision.to}%`;
  }
  text += ` \u00b7 ${time(decision.at)}`;
  if (decision.by) {
    text += ` by ${decision.by}`;
  }
  const why = (decision.rules ?? []).map(r => `${r.rule} (${r.sides})`);
  if (decision.reason) {
    why.push(decision.reason);
  }
  return why.length ? `${text}: ${why.join('; ')}` : text;
}

/** The state's class on the block: running, promoted, aborted, rolled-back. */
export function rolloutClass(status: IRolloutStatus): string {
  const word = status.active ? 'running' : (status.rollout?.status ?? 'none');
  return `cellops-rollout-${word.replace(/\s+/g, '-')}`;
}
