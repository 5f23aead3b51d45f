import { changedParameters, cliCommand, cliText, fieldFor, formFields } from '../params';

describe('form fields from the parameters cell', () => {
  it('picks an input per type, with the default as typed on a command line', () => {
    expect(fieldFor({ name: 'alpha', value: 0.5, type: 'float' })).toEqual({
      name: 'alpha',
      input: 'number',
      initial: '0.5',
      type: 'float'
    });
    expect(fieldFor({ name: 'depth', value: 3, type: 'int' }).initial).toBe('3');
    expect(fieldFor({ name: 'full', value: true, type: 'bool' })).toMatchObject({
      input: 'checkbox',
      initial: 'true'
    });
    expect(fieldFor({ name: 'data', value: 'data/x.csv', type: 'str' })).toMatchObject({
      input: 'text',
      initial: 'data/x.csv'
    });
    expect(fieldFor({ name: 'cols', value: ['a', 'b'], type: 'list' }).initial).toBe(
      '["a","b"]'
    );
    expect(fieldFor({ name: 'seed', value: null, type: 'NoneType' }).initial).toBe('None');
  });

  it('cliText writes Python booleans', () => {
    expect(cliText(false)).toBe('False');
  });
});

describe('changedParameters', () => {
  const fields = formFields([
    { name: 'alpha', value: 0.5, type: 'float' },
    { name: 'full', value: false, type: 'bool' },
    { name: 'data', value: 'a.csv', type: 'str' }
  ]);

  it('sends only what differs from the notebook defaults', () => {
    expect(changedParameters(fields, { alpha: '0.5', full: 'false', data: 'a.csv' })).toEqual(
      {}
    );
    expect(changedParameters(fields, { alpha: ' 0.7 ', full: 'true', data: 'a.csv' })).toEqual({
      alpha: '0.7',
      full: 'True'
    });
  });

  it('passes a wrong value through for the server to refuse with the CLI message', () => {
    expect(changedParameters(fields, { alpha: 'lots' })).toEqual({ alpha: 'lots' });
  });
});

describe('cliCommand', () => {
  it('quotes what a shell would split', () => {
    expect(cliCommand('notebooks/train.ipynb', { alpha: '0.7', note: "it's big" })).toBe(
      `cellops run notebooks/train.ipynb -p alpha 0.7 -p note 'it'"'"'s big'`
    );
    expect(cliCommand('my nb.ipynb', {})).toBe("cellops run 'my nb.ipynb'");
  });
});
