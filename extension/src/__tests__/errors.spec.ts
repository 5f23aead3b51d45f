import {
  CellopsApiError,
  conditionText,
  messageFor,
  notLoadedMessage,
  START_HINT
} from '../errors';

describe('messageFor', () => {
  it('names the unreachable store with its URI and says it recovers', () => {
    const error = new CellopsApiError(
      503,
      'cannot reach the MLflow store at http://127.0.0.1:9/: connection refused',
      { status: 503, message: 'cannot reach the MLflow store at http://127.0.0.1:9/: connection refused', uri: 'http://127.0.0.1:9/' }
    );
    const message = messageFor(error, 20000);
    expect(message.kind).toBe('store');
    expect(message.uri).toBe('http://127.0.0.1:9/');
    expect(message.title).toBe('Cannot reach the MLflow store at http://127.0.0.1:9/');
    expect(message.text).toContain('connection refused');
    expect(message.text).toContain('tries again in 20 s');
  });

  it('shows each condition of a gate refusal with both sides', () => {
    const conditions = [
      { text: 'f1 >= 0.9', left: 0.8512, right: 0.9, passed: false },
      { text: 'auc >= champion.auc - 0.02', left: 0.95, right: 0.93, passed: true }
    ];
    const error = new CellopsApiError(409, 'the gate refused fraud v4', {
      status: 409,
      message: 'the gate refused fraud v4',
      conditions
    });
    const message = messageFor(error);
    expect(message.kind).toBe('gate');
    expect(message.conditions).toEqual(conditions);
    expect(conditionText(conditions[0])).toBe('f1 >= 0.9: 0.8512 vs 0.9, failed');
    expect(conditionText(conditions[1])).toBe('auc >= champion.auc - 0.02: 0.95 vs 0.93, passed');
  });

  it("keeps the server's message for an unknown model", () => {
    const text = "no model 'frod' in sqlite:///x.db; models there: fraud";
    const message = messageFor(new CellopsApiError(404, text, { status: 404, message: text }));
    expect(message.kind).toBe('model');
    expect(message.text).toBe(text);
  });

  it('tells a missing server extension (a 404 that is not ours) from an unknown model', () => {
    const message = messageFor(new CellopsApiError(404, 'Not Found', null));
    expect(message.kind).toBe('missing-extension');
    expect(message.text).toContain('jupyter server extension enable cellops_lab');
  });

  it("shows the CLI's message for a refused job parameter", () => {
    const text = "train.ipynb has no parameter 'alpah'. Did you mean 'alpha'?";
    const message = messageFor(new CellopsApiError(400, text, { status: 400, message: text }));
    expect(message.kind).toBe('usage');
    expect(message.text).toBe(text);
  });

  it('says when the Jupyter server does not answer', () => {
    const message = messageFor(new CellopsApiError(0, 'Failed to fetch'), 4000);
    expect(message.kind).toBe('network');
    expect(message.text).toContain('Failed to fetch');
  });

  it('handles errors that are not from the server', () => {
    expect(messageFor(new TypeError('x is undefined')).text).toBe('x is undefined');
  });
});

describe('notLoadedMessage', () => {
  it("prefers the server's hint and explains how to start otherwise", () => {
    expect(notLoadedMessage('add %load_ext cellops').text).toBe('add %load_ext cellops');
    expect(notLoadedMessage(null).text).toBe(START_HINT);
    expect(START_HINT).toContain('%load_ext cellops');
    expect(START_HINT).toContain('%%step NAME');
  });
});
