import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { CellopsApiError } from './errors';
import { IErrorBody } from './types';

/**
 * Call the cellops_lab server extension: `ServerConnection.makeRequest` sends the token and
 * the XSRF header as JupyterLab's own requests do. Resolves to the JSON answer; rejects with
 * a `CellopsApiError` (status 0 when the server did not answer).
 */
export async function requestAPI<T>(
  endPoint: string,
  serverSettings: ServerConnection.ISettings,
  init: RequestInit = {},
  query: { [key: string]: string } = {}
): Promise<T> {
  let url = URLExt.join(serverSettings.baseUrl, 'cellops', 'api', endPoint);
  if (Object.keys(query).length) {
    url += URLExt.objectToQueryString(query);
  }
  if (init.body && !init.headers) {
    init = { ...init, headers: { 'Content-Type': 'application/json' } };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, serverSettings);
  } catch (error) {
    throw new CellopsApiError(0, String((error as Error).message || error), null, endPoint);
  }
  const text = await response.text();
  let data: any = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const body: IErrorBody | null = data && typeof data === 'object' ? data : null;
    const message = (body && body.message) || response.statusText || `HTTP ${response.status}`;
    throw new CellopsApiError(response.status, String(message), body, endPoint);
  }
  return data as T;
}

/** A path segment (a model name) as it goes in a route. */
export function segment(text: string): string {
  return encodeURIComponent(text);
}
