/**
 * The "Run as job" form: one field per parameter of the notebook's parameters cell (what
 * `cellops inspect` shows), and the values to send, as a person would type them after
 * `cellops run NOTEBOOK -p NAME`.
 */
import { IParameter } from './types';

export interface IField {
  name: string;
  /** the HTML input kind */
  input: 'text' | 'number' | 'checkbox';
  /** the default as text in the field (for a checkbox: 'true' or 'false') */
  initial: string;
  /** the Python type the notebook's default has */
  type: string;
}

/** The default value as typed on a command line (`-p NAME TEXT`). */
export function cliText(value: unknown): string {
  if (value === null || value === undefined) {
    return 'None';
  }
  if (typeof value === 'boolean') {
    return value ? 'True' : 'False';
  }
  if (typeof value === 'string') {
    return value;
  }
  if (typeof value === 'number') {
    return String(value);
  }
  return JSON.stringify(value);
}

export function fieldFor(parameter: IParameter): IField {
  const type = parameter.type || typeof parameter.value;
  if (type === 'bool' || typeof parameter.value === 'boolean') {
    return {
      name: parameter.name,
      input: 'checkbox',
      initial: parameter.value ? 'true' : 'false',
      type: 'bool'
    };
  }
  if (type === 'int' || type === 'float') {
    return { name: parameter.name, input: 'number', initial: cliText(parameter.value), type };
  }
  return { name: parameter.name, input: 'text', initial: cliText(parameter.value), type };
}

export function formFields(parameters: IParameter[]): IField[] {
  return parameters.map(fieldFor);
}

/**
 * The parameters to send: only those changed from the notebook's defaults (the job takes the
 * others from the notebook itself), as text, which the server checks as the CLI does.
 */
export function changedParameters(
  fields: IField[],
  values: { [name: string]: string }
): { [name: string]: string } {
  const result: { [name: string]: string } = {};
  for (const field of fields) {
    if (!(field.name in values)) {
      continue;
    }
    let value = values[field.name];
    if (field.input === 'checkbox') {
      value = value === 'true' ? 'True' : 'False';
      if ((value === 'True') === (field.initial === 'true')) {
        continue;
      }
    } else if (value.trim() === field.initial.trim()) {
      continue;
    }
    result[field.name] = value.trim();
  }
  return result;
}

/** `cellops run NOTEBOOK -p a 1 ...`: the same job from a terminal (shell-quoted). */
export function cliCommand(notebook: string, parameters: { [name: string]: string }): string {
  const parts = ['cellops', 'run', shellQuote(notebook)];
  for (const name of Object.keys(parameters)) {
    parts.push('-p', name, shellQuote(parameters[name]));
  }
  return parts.join(' ');
}

export function shellQuote(text: string): string {
  if (text !== '' && /^[A-Za-z0-9_./:=@%+-]+$/.test(text)) {
    return text;
  }
  return `'${text.replace(/'/g, `'"'"'`)}'`;
}
