import { badgeFor, isStepSource, STATE_CLASSES, stepsByCell } from '../state';
import { IStep } from '../types';

function step(overrides: Partial<IStep> = {}): IStep {
  return {
    name: 'train',
    cell: 1,
    cell_id: 'c1',
    state: 'fresh',
    reason: null,
    duration_s: 1.5,
    metrics: {},
    run_id: 'abc123',
    run_url: null,
    ...overrides
  };
}

describe('badgeFor', () => {
  it('gives each state its class, label and icon', () => {
    const seen = new Set<string>();
    for (const state of ['fresh', 'cached', 'stale', 'failed', 'never_run'] as const) {
      const badge = badgeFor(step({ state }));
      expect(STATE_CLASSES).toContain(badge.className);
      expect(badge.icon).not.toBe('');
      seen.add(badge.icon);
    }
    expect(seen.size).toBe(5); // not told by colour alone
    expect(badgeFor(step({ state: 'never_run' })).className).toBe('cellops-state-never-run');
    expect(badgeFor(step({ state: 'never_run' })).label).toBe('never run');
  });

  it('says why a step is stale, its last duration and its run id', () => {
    const badge = badgeFor(
      step({ state: 'stale', reason: "upstream 'load' re-ran", duration_s: 2.25 })
    );
    expect(badge.tooltip).toContain("step 'train': stale");
    expect(badge.tooltip).toContain("why: upstream 'load' re-ran");
    expect(badge.tooltip).toContain('last duration: 2.25 s');
    expect(badge.tooltip).toContain('run id: abc123');
  });

  it('tells how to record a step that never ran, without a run id', () => {
    const badge = badgeFor(step({ state: 'never_run', duration_s: null, run_id: null }));
    expect(badge.tooltip).toContain('run the cell to record it');
    expect(badge.tooltip).not.toContain('run id');
    expect(badge.tooltip).not.toContain('duration');
  });

  it('shows a state it does not know as never run', () => {
    const badge = badgeFor(step({ state: 'exploded' as any }));
    expect(badge.className).toBe('cellops-state-never-run');
  });
});

describe('isStepSource', () => {
  it.each([
    ['%%step train\nfit()', true],
    ['\n  \n%%step train --files-in a.csv', true],
    ['%%step', true],
    ['%%stepper x', false],
    ['# %%step train', false],
    ['x = 1\n%%step train', false],
    ['', false]
  ])('%j -> %s', (source, expected) => {
    expect(isStepSource(source)).toBe(expected);
  });
});

describe('stepsByCell', () => {
  const cells = [
    { id: 'c0', source: '%load_ext cellops' },
    { id: 'c1', source: '%%step load\nx = 1' },
    { id: 'c2', source: '%%step train\ny = x' }
  ];

  it('matches by cell id first, whatever the index says', () => {
    const steps = [step({ name: 'train', cell: 1, cell_id: 'c2' })];
    const map = stepsByCell(cells, steps);
    expect(map.get(2)?.name).toBe('train');
    expect(map.has(1)).toBe(false);
  });

  it('falls back to the index for cells without ids', () => {
    const map = stepsByCell(
      cells.map(c => ({ ...c, id: null })),
      [step({ name: 'load', cell: 1, cell_id: null })]
    );
    expect(map.get(1)?.name).toBe('load');
  });

  it('drops the badge of a cell that is no longer a step', () => {
    const edited = [cells[0], { id: 'c1', source: 'x = 1' }, cells[2]];
    const map = stepsByCell(edited, [step({ name: 'load', cell: 1, cell_id: 'c1' })]);
    expect(map.size).toBe(0);
  });
});
