/**
 * What went wrong talking to the server, and the message the panel shows for it: pure, so
 * every case is tested without a server.
 */
import { ICondition, IErrorBody } from './types';
import { formatNumber } from './format';

/** An answer of the server that was not a success (status 0: no answer at all). */
export class CellopsApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: IErrorBody | null = null,
    readonly route: string = ''
  ) {
    super(message);
    this.name = 'CellopsApiError';
  }
}

export type MessageKind =
  | 'store'
  | 'model'
  | 'gate'
  | 'usage'
  | 'forbidden'
  | 'missing-extension'
  | 'network'
  | 'server';

export interface IPanelMessage {
  kind: MessageKind;
  title: string;
  text: string;
  /** the gate's conditions, each with both sides (gate refusals) */
  conditions?: ICondition[];
  /** the store's URI (store unreachable) */
  uri?: string;
}

export const START_HINT =
  'Run `%load_ext cellops` in a cell at the top of the notebook, then mark cells with ' +
  '`%%step NAME` and run them: their states show here and on the cells.';

/** The panel's text for a notebook that does not load cellops (the server's hint first). */
export function notLoadedMessage(hint: string | null | undefined): IPanelMessage {
  return {
    kind: 'usage',
    title: 'This notebook does not use cellops yet',
    text: hint && hint.trim() ? hint : START_HINT
  };
}

/** `f1 >= 0.9: 0.85 vs 0.9, failed`: one condition with both of its sides. */
export function conditionText(condition: ICondition): string {
  const verdict = condition.passed ? 'passed' : 'failed';
  return (
    `${condition.text}: ${formatNumber(condition.left)} vs ` +
    `${formatNumber(condition.right)}, ${verdict}`
  );
}

function bodyMessage(error: CellopsApiError): string {
  const text = (error.body && error.body.message) || error.message;
  return String(text || '').trim();
}

/**
 * What the panel says for `error`. `retryInMs`: when the panel tries again by itself (said
 * for an unreachable store, so the person knows it recovers on its own).
 */
export function messageFor(error: unknown, retryInMs: number | null = null): IPanelMessage {
  if (!(error instanceof CellopsApiError)) {
    const text = error instanceof Error ? error.message : String(error);
    return { kind: 'server', title: 'cellops: unexpected error', text };
  }
  const body = error.body;
  const text = bodyMessage(error);
  if (error.status === 0) {
    return {
      kind: 'network',
      title: 'The Jupyter server does not answer',
      text: `${text || 'no answer'}. Is \`jupyter lab\` still running?${retryText(retryInMs)}`
    };
  }
  if (error.status === 503) {
    const uri = (body && body.uri) || '';
    return {
      kind: 'store',
      title: uri ? `Cannot reach the MLflow store at ${uri}` : 'Cannot reach the MLflow store',
      text: `${text}${retryText(retryInMs)}`,
      uri
    };
  }
  if (error.status === 409 && body && Array.isArray(body.conditions)) {
    return {
      kind: 'gate',
      title: 'The gate refused the promotion',
      text,
      conditions: body.conditions
    };
  }
  if (error.status === 404 && body === null) {
    return {
      kind: 'missing-extension',
      title: 'The cellops_lab server extension is not running',
      text:
        'The Jupyter server has no cellops routes. Run `jupyter server extension enable ' +
        'cellops_lab` (or reinstall cellops) and restart `jupyter lab`.'
    };
  }
  if (error.status === 404) {
    return { kind: 'model', title: 'Not found', text };
  }
  if (error.status === 403) {
    return { kind: 'forbidden', title: 'Not allowed', text };
  }
  if (error.status === 400 || error.status === 409) {
    return { kind: 'usage', title: 'cellops refused', text };
  }
  return { kind: 'server', title: `cellops: server error ${error.status}`, text };
}

function retryText(retryInMs: number | null): string {
  if (retryInMs === null) {
    return '';
  }
  return ` The panel tries again in ${Math.round(retryInMs / 1000)} s and recovers by itself.`;
}
