import { formatDuration, formatMetrics, formatNumber, formatPercent } from '../format';
import { modelVersionUrl, runLink, runUrl } from '../links';
import { sparkline } from '../sparkline';

describe('format', () => {
  it('prints metrics with four significant digits, as `cellops steps`', () => {
    expect(formatMetrics({ f1: 0.912345, n: 1200, tiny: 0.00001234 })).toBe(
      'f1=0.9123, n=1200, tiny=1.234e-5'
    );
    expect(formatNumber(null)).toBe('\u2013');
    expect(formatNumber(123456)).toBe('1.235e+5');
  });

  it('prints durations in a readable unit', () => {
    expect(formatDuration(0.0421)).toBe('42 ms');
    expect(formatDuration(2.345)).toBe('2.35 s');
    expect(formatDuration(75)).toBe('1 min 15 s');
    expect(formatDuration(null)).toBe('');
  });

  it('prints shares as percentages', () => {
    expect(formatPercent(1 / 3)).toBe('33.3%');
  });
});

describe('links', () => {
  it("links a run through MLflow's /runs/ID route on the runs workflow", () => {
    expect(runUrl('http://127.0.0.1:5000/', 'ab cd')).toBe(
      'http://127.0.0.1:5000/#/runs/ab%20cd?workflowType=machine_learning'
    );
    expect(modelVersionUrl('http://h', 'fraud', '3')).toBe(
      'http://h/#/models/fraud/versions/3?workflowType=machine_learning'
    );
  });

  it("lets the setting override the server's link", () => {
    expect(runLink('r1', 'http://server/#/x', 'http://mine')).toBe(
      'http://mine/#/runs/r1?workflowType=machine_learning'
    );
    expect(runLink('r1', 'http://server/#/x', '')).toBe('http://server/#/x');
    expect(runLink('r1', null, '  ')).toBeNull();
    expect(runLink(null, 'http://server/#/x', 'http://mine')).toBeNull();
  });
});

describe('sparkline', () => {
  it('draws shares with 0 at the bottom and 1 at the top', () => {
    const line = sparkline([0, 0.5, 1], 100, 20, 0.5, 0);
    expect(line.points).toBe('0,20 50,10 100,0');
    expect(line.last).toEqual({ x: 100, y: 0 });
    expect(line.thresholdY).toBe(10);
  });

  it('draws one check as a flat line and nothing for none', () => {
    expect(sparkline([0.25], 10, 8, null, 0).points).toBe('0,6 10,6');
    expect(sparkline([], 10, 8).points).toBe('');
    expect(sparkline([NaN, 2], 10, 8, null, 0).points).toBe('0,0 10,0');
  });
});
