import { h, link, replace } from './dom';
import { messageFor } from './errors';
import { formatTime } from './format';
import { changedParameters, cliCommand, formFields, IField } from './params';
import { IJob, IParameter } from './types';

export interface IJobActions {
  start(parameters: { [name: string]: string }): Promise<IJob>;
  /** a job started: the panel follows it */
  changed(): void;
}

/**
 * Recent jobs of the notebook, and "Run as job": a form built from the notebook's parameters
 * cell. The form is rebuilt only when the parameters change, so a refresh never eats what
 * the person is typing.
 */
export class JobsView {
  readonly node = h('div', { class: 'cellops-section cellops-jobs' });

  constructor(private readonly _actions: IJobActions) {
    this.node.append(h('h3', {}, 'Jobs'), this._list, this._form);
  }

  render(jobs: IJob[]): void {
    if (!jobs.length) {
      replace(this._list, h('p', { class: 'cellops-empty' }, 'No job of this notebook yet.'));
      return;
    }
    const rows = jobs.map(job =>
      h(
        'tr',
        { 'data-job': job.id, class: `cellops-job-${job.status}` },
        h('td', {}, link(job.id, job.url)),
        h('td', { class: 'cellops-job-status' }, job.status),
        h(
          'td',
          {},
          job.progress ? `${job.progress.done}/${job.progress.total} cells` : ''
        ),
        h('td', {}, formatTime(job.started)),
        h('td', { class: 'cellops-job-message' }, job.message || '')
      )
    );
    replace(
      this._list,
      h(
        'table',
        { class: 'cellops-table' },
        h(
          'thead',
          {},
          h('tr', {}, ['job', 'status', 'progress', 'started', ''].map(t => h('th', {}, t)))
        ),
        h('tbody', {}, rows)
      )
    );
  }

  /** Build the form for the notebook's parameters (kept as it is when they did not change). */
  setParameters(notebook: string, parameters: IParameter[] | null, problem = ''): void {
    const key = JSON.stringify([notebook, parameters, problem]);
    if (key === this._key) {
      return;
    }
    this._key = key;
    this._notebook = notebook;
    this._fields = formFields(parameters || []);
    const inputs = this._fields.map(field => this._input(field));
    replace(
      this._form,
      h('h4', {}, 'Run as job'),
      problem
        ? h('p', { class: 'cellops-error' }, problem)
        : parameters === null
        ? h('p', { class: 'cellops-muted' }, 'Reading the parameters cell\u2026')
        : this._fields.length
          ? h('div', { class: 'cellops-fields' }, inputs)
          : h(
              'p',
              { class: 'cellops-muted' },
              'No parameters cell (a cell tagged `parameters`): the job runs the notebook as it is.'
            ),
      h(
        'div',
        { class: 'cellops-form-actions' },
        h(
          'button',
          {
            class: 'jp-mod-styled jp-mod-accept cellops-run-job',
            type: 'button',
            onclick: () => void this.submit()
          },
          'Run as job'
        ),
        this._cli
      ),
      this._result
    );
    this._updateCli();
  }

  /** Put the focus on the form (the "run notebook as job" command). */
  focus(): void {
    this._form.scrollIntoView({ block: 'nearest' });
    const first = this._form.querySelector('input, button') as HTMLElement | null;
    first?.focus();
  }

  async submit(): Promise<void> {
    const parameters = changedParameters(this._fields, this._values());
    replace(this._result, h('span', { class: 'cellops-muted' }, 'Starting\u2026'));
    try {
      const job = await this._actions.start(parameters);
      replace(this._result, h('span', { class: 'cellops-ok' }, `Started job ${job.id}`));
      this._actions.changed();
    } catch (error) {
      const message = messageFor(error);
      replace(
        this._result,
        h('div', { class: 'cellops-error', role: 'alert' }, message.text || message.title)
      );
    }
  }

  private _input(field: IField): HTMLElement {
    const id = `cellops-param-${field.name}`;
    const input =
      field.input === 'checkbox'
        ? h('input', {
            id,
            type: 'checkbox',
            name: field.name,
            checked: field.initial === 'true',
            onchange: () => this._updateCli()
          })
        : h('input', {
            id,
            type: field.input === 'number' ? 'text' : 'text',
            inputmode: field.input === 'number' ? 'decimal' : null,
            name: field.name,
            value: field.initial,
            class: 'jp-mod-styled',
            oninput: () => this._updateCli()
          });
    return h(
      'label',
      { class: 'cellops-field', for: id, title: `${field.name} (${field.type})` },
      h('span', {}, field.name),
      input,
      h('span', { class: 'cellops-muted' }, field.type)
    );
  }

  private _values(): { [name: string]: string } {
    const values: { [name: string]: string } = {};
    this._form.querySelectorAll('input').forEach(input => {
      const element = input as HTMLInputElement;
      values[element.name] =
        element.type === 'checkbox' ? String(element.checked) : element.value;
    });
    return values;
  }

  private _updateCli(): void {
    const parameters = changedParameters(this._fields, this._values());
    this._cli.textContent = cliCommand(this._notebook, parameters);
  }

  private _list = h('div', { class: 'cellops-job-list' });
  private _form = h('form', { class: 'cellops-job-form', onsubmit: (e: Event) => e.preventDefault() });
  private _cli = h('code', { class: 'cellops-cli', title: 'the same job from a terminal' });
  private _result = h('div', { class: 'cellops-job-result' });
  private _fields: IField[] = [];
  private _notebook = '';
  private _key = '';
}
