import { NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { requestAPI } from './request';
import { ICellRef } from './state';
import { IStepsReply } from './types';

/** A second look after a cell ran: catches state cellops writes just after its reply. */
const FOLLOW_UP_MS = 600;
/** Edits are sent once typing pauses. */
const EDIT_DEBOUNCE_MS = 400;

/**
 * The step states of one open notebook, computed by the server on the cells as they are in
 * the browser (sent with each request: the saved file may lag behind the editor). Shared by
 * the notebook's badges and the side panel.
 */
export class NotebookSteps implements IDisposable {
  constructor(
    readonly panel: NotebookPanel,
    private readonly _serverSettings: ServerConnection.ISettings
  ) {
    panel.context.ready.then(() => {
      if (this._disposed) {
        return;
      }
      panel.model?.contentChanged.connect(this._onContentChanged, this);
      void this.refresh();
    });
  }

  /** Emitted after each answer (or failure). */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted when a cell of this notebook finished running. */
  get executed(): ISignal<this, void> {
    return this._executed;
  }

  get reply(): IStepsReply | null {
    return this._reply;
  }

  get error(): unknown {
    return this._error;
  }

  get path(): string {
    return this.panel.context.path;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** The notebook's cells now: code cells with their source, others as empty cells. */
  liveCells(): ICellRef[] {
    const cells = this.panel.model?.cells;
    const result: ICellRef[] = [];
    if (!cells) {
      return result;
    }
    for (let i = 0; i < cells.length; i++) {
      const cell = cells.get(i);
      result.push({
        id: cell.id || null,
        source: cell.type === 'code' ? cell.sharedModel.getSource() : ''
      });
    }
    return result;
  }

  /**
   * Ask the server for the states of the live cells. Requests never overlap: one asked for
   * meanwhile runs right after, with the sources of that moment. Rejects when it failed.
   */
  refresh(): Promise<void> {
    if (this._disposed) {
      return Promise.resolve();
    }
    if (this._inFlight) {
      this._again = true;
      return this._inFlight;
    }
    this._inFlight = this._loop().finally(() => {
      this._inFlight = null;
    });
    return this._inFlight;
  }

  /** A cell of this notebook finished: refresh now, and once more a moment later. */
  cellExecuted(): void {
    this._executed.emit(undefined);
    void this.refresh().catch(() => undefined);
    clearTimeout(this._followUp);
    this._followUp = setTimeout(
      () => void this.refresh().catch(() => undefined),
      FOLLOW_UP_MS
    );
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    clearTimeout(this._followUp);
    clearTimeout(this._edit);
    Signal.clearData(this);
  }

  private async _loop(): Promise<void> {
    let failure: unknown = null;
    do {
      this._again = false;
      try {
        const reply = await requestAPI<IStepsReply>('steps', this._serverSettings, {
          method: 'POST',
          body: JSON.stringify({ path: this.path, cells: this.liveCells() })
        });
        this._reply = reply;
        this._error = null;
        failure = null;
      } catch (error) {
        this._error = error;
        failure = error;
      }
      if (!this._disposed) {
        this._changed.emit(undefined);
      }
    } while (this._again && !this._disposed);
    if (failure !== null) {
      throw failure;
    }
  }

  private _onContentChanged(): void {
    clearTimeout(this._edit);
    this._edit = setTimeout(
      () => void this.refresh().catch(() => undefined),
      EDIT_DEBOUNCE_MS
    );
  }

  private _changed = new Signal<this, void>(this);
  private _executed = new Signal<this, void>(this);
  private _reply: IStepsReply | null = null;
  private _error: unknown = null;
  private _inFlight: Promise<void> | null = null;
  private _again = false;
  private _disposed = false;
  private _followUp: ReturnType<typeof setTimeout> | undefined = undefined;
  private _edit: ReturnType<typeof setTimeout> | undefined = undefined;
}
