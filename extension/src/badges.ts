import { Cell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { IDisposable } from '@lumino/disposable';

import { NotebookSteps } from './notebook';
import { badgeFor, IBadge, STATE_CLASSES, stepsByCell } from './state';

const BADGE_CLASS = 'cellops-badge';
const STEP_CLASS = 'cellops-step';
const ROW_CLASS = 'cellops-badge-row';

/**
 * The badges of one notebook's `%%step` cells. Only the DOM is touched (classes and a small
 * element on each cell's node), never the notebook model, so opening a notebook leaves it
 * clean. Cells are re-marked whenever they may have been re-rendered: new answers, cells
 * added or moved, a cell scrolled back into the window of a windowed notebook.
 */
export class CellBadges implements IDisposable {
  constructor(
    private readonly _panel: NotebookPanel,
    private readonly _steps: NotebookSteps
  ) {
    _steps.changed.connect(this._schedule, this);
    _panel.content.cellInViewportChanged.connect(this._onViewport, this);
    _panel.context.ready.then(() => {
      if (!this._disposed) {
        _panel.model?.cells.changed.connect(this._schedule, this);
      }
    });
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Mark every cell now. */
  apply(): void {
    const reply = this._steps.reply;
    const widgets = this._panel.content.widgets;
    const matched = reply
      ? stepsByCell(this._steps.liveCells(), reply.steps)
      : new Map();
    widgets.forEach((cell, index) => {
      const step = matched.get(index);
      if (step) {
        mark(cell, badgeFor(step));
      } else {
        unmark(cell);
      }
    });
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._steps.changed.disconnect(this._schedule, this);
    this._panel.content.cellInViewportChanged.disconnect(this._onViewport, this);
    this._panel.model?.cells.changed.disconnect(this._schedule, this);
    cancelAnimationFrame(this._frame);
    this._panel.content.widgets.forEach(unmark);
  }

  private _schedule(): void {
    if (this._disposed) {
      return;
    }
    // after the notebook has made (or re-made) the cells' widgets for this change
    cancelAnimationFrame(this._frame);
    this._frame = requestAnimationFrame(() => {
      if (!this._disposed) {
        this.apply();
      }
    });
    // a hidden page gets no animation frames: mark at once too (cheap, idempotent)
    this.apply();
  }

  private _onViewport(_: unknown, cell: Cell): void {
    if (cell.inViewport) {
      this._schedule();
    }
  }

  private _frame = 0;
  private _disposed = false;
}

/**
 * Where a badge sits: a thin row right under the cell's input (as jupyterlab-execute-time
 * shows its line), so it hides none of the code; on a cell not rendered yet, in the cell.
 */
function place(cell: Cell, element: HTMLElement): void {
  const input = cell.node.querySelector(':scope > .jp-Cell-inputWrapper');
  if (input) {
    if (input.nextElementSibling !== element) {
      input.after(element);
    }
  } else if (element.parentElement !== cell.node) {
    cell.node.appendChild(element);
  }
}

function mark(cell: Cell, badge: IBadge): void {
  const node = cell.node;
  for (const name of STATE_CLASSES) {
    if (name !== badge.className) {
      node.classList.remove(name);
    }
  }
  node.classList.add(STEP_CLASS, badge.className);
  node.dataset.cellopsState = badge.state;
  let row = node.querySelector(`:scope > .${ROW_CLASS}`) as HTMLElement | null;
  if (!row) {
    row = document.createElement('div');
    row.className = ROW_CLASS;
    const pill = document.createElement('span');
    pill.className = BADGE_CLASS;
    pill.setAttribute('role', 'status');
    row.appendChild(pill);
  }
  place(cell, row);
  const element = row.firstElementChild as HTMLElement;
  const text = `${badge.icon} ${badge.label}`;
  if (element.textContent !== text) {
    element.textContent = text;
  }
  element.title = badge.tooltip;
  element.setAttribute('aria-label', badge.tooltip);
  element.dataset.state = badge.state;
}

function unmark(cell: Cell): void {
  const node = cell.node;
  if (!node.classList.contains(STEP_CLASS)) {
    return;
  }
  node.classList.remove(STEP_CLASS, ...STATE_CLASSES);
  delete node.dataset.cellopsState;
  node.querySelectorAll(`:scope > .${ROW_CLASS}`).forEach(element => element.remove());
}
