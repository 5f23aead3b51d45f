/**
 * What a step's badge and table row show: pure functions of the server's answer, so that
 * the cell badges and the side panel agree and are tested without a browser.
 */
import { IStep, StepState } from './types';
import { formatDuration } from './format';

export interface IBadge {
  /** the state as a CSS-safe word, e.g. `never-run` */
  state: string;
  /** class put on the cell's node */
  className: string;
  /** the words a person reads on the badge */
  label: string;
  /** a one-character icon, so the state is not told by colour alone */
  icon: string;
  /** hover text: the state, why stale or failed, the last duration, the run id */
  tooltip: string;
}

const LABELS: { [state in StepState]: string } = {
  fresh: 'fresh',
  cached: 'cached',
  stale: 'stale',
  failed: 'failed',
  never_run: 'never run'
};

const ICONS: { [state in StepState]: string } = {
  fresh: '\u2714', // heavy check mark
  cached: '\u21bb', // restored from the cache
  stale: '\u26a0', // warning sign
  failed: '\u2716', // heavy multiplication x
  never_run: '\u25cb' // white circle
};

/** Every class a badge may leave on a cell node (removed before another is put). */
export const STATE_CLASSES: string[] = Object.keys(LABELS).map(
  state => `cellops-state-${cssState(state as StepState)}`
);

export function cssState(state: StepState): string {
  return state.replace('_', '-');
}

/** Whether `state` is one the server may answer (an unknown one is shown as never run). */
export function knownState(state: string): StepState {
  return (state in LABELS ? state : 'never_run') as StepState;
}

export function badgeFor(step: IStep): IBadge {
  const state = knownState(step.state);
  const lines = [`step '${step.name}': ${LABELS[state]}`];
  if (step.reason) {
    lines.push(state === 'stale' ? `why: ${step.reason}` : step.reason);
  }
  if (step.duration_s !== null && step.duration_s !== undefined) {
    lines.push(`last duration: ${formatDuration(step.duration_s)}`);
  }
  if (step.run_id) {
    lines.push(`run id: ${step.run_id}`);
  }
  if (state === 'never_run') {
    lines.push('run the cell to record it');
  }
  return {
    state: cssState(state),
    className: `cellops-state-${cssState(state)}`,
    label: LABELS[state],
    icon: ICONS[state],
    tooltip: lines.join('\n')
  };
}

/** A live cell of the notebook, as the badges see it. */
export interface ICellRef {
  id: string | null;
  source: string;
}

const STEP_MAGIC = /^\s*%%step(\s|$)/;

/** Whether a cell's source makes it a step (`%%step NAME` on its first non-blank line). */
export function isStepSource(source: string): boolean {
  const first = source.split('\n').find(line => line.trim() !== '');
  return first !== undefined && STEP_MAGIC.test(first);
}

/**
 * For each cell index, the step the server reported for it: matched by the cell's id, else
 * (a step without an id the notebook has) by the index (the server answers for the sources
 * it was sent, in that order), and only
 * for cells that are still steps (a cell edited into a plain cell loses its badge).
 */
export function stepsByCell(cells: ICellRef[], steps: IStep[]): Map<number, IStep> {
  const liveIds = new Set(cells.map(cell => cell.id).filter(id => id));
  const byId = new Map<string, IStep>();
  const byIndex = new Map<number, IStep>();
  for (const step of steps) {
    if (step.cell_id && liveIds.has(step.cell_id)) {
      byId.set(step.cell_id, step);
    } else if (step.cell !== null && step.cell !== undefined && step.cell >= 0) {
      byIndex.set(step.cell, step); // no id to go by: the index of the cells sent
    }
  }
  const result = new Map<number, IStep>();
  cells.forEach((cell, index) => {
    if (!isStepSource(cell.source)) {
      return;
    }
    const step = (cell.id && byId.get(cell.id)) || byIndex.get(index);
    if (step) {
      result.set(index, step);
    }
  });
  return result;
}
