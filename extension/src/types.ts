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

export interface IModel {
  name: string;
  aliases: { [alias: string]: string };
  versions: IModelVersion[];
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
