import {
  decisionText,
  formatRate,
  rolloutClass,
  ruleLines,
  showsRollout,
  splitText,
  variantTable,
  windowText
} from '../rollout';
import { IRolloutStatus, IVariantMetrics } from '../types';

function metrics(extra: Partial<IVariantMetrics> = {}): IVariantMetrics {
  return {
    requests: 200,
    errors: 2,
    error_rate: 0.01,
    latency_p50_ms: 3.2,
    latency_p95_ms: 12.345,
    latency_p99_ms: 20,
    ...extra
  };
}

function status(extra: Partial<IRolloutStatus> = {}): IRolloutStatus {
  return {
    model: 'fraud',
    active: true,
    rollout: {
      id: 'abc',
      mode: 'canary',
      status: 'running',
      share: 10,
      champion: '3',
      challenger: '4',
      started: '2025-01-02T10:00:00+00:00',
      by: 'ana',
      revision: 1
    },
    split: { champion: 90, canary: 10 },
    variants: {
      canary: metrics({ requests: 20, errors: 0, error_rate: 0 }),
      champion: metrics()
    },
    window: { index: 3, seconds: 60, variants: {} },
    rules: [
      {
        condition: 'canary.error_rate <= champion.error_rate + 0.01',
        status: 'pass',
        sides: 'canary.error_rate = 0 <= champion.error_rate + 0.01 = 0.02'
      },
      { condition: 'shadow.agreement >= 0.95', status: 'skipped', sides: '' }
    ],
    min_requests: 50,
    schedule: [],
    last_decision: { action: 'started', at: '2025-01-02T10:00:00+00:00', by: 'ana', to: 10 },
    ...extra
  };
}

const time = (iso: string) => `<${iso}>`;

describe('rollout', () => {
  it('reads the split of a canary, a shadow and an ended rollout', () => {
    expect(splitText(status())).toBe('canary 10% \u2192 v4, 90% \u2192 v3 (champion)');
    const shadow = status();
    shadow.rollout!.mode = 'shadow';
    shadow.rollout!.share = 0;
    expect(splitText(shadow)).toBe('shadow of v4: v3 answers every request');
    const ended = status({ active: false, split: null });
    ended.rollout!.status = 'rolled back';
    expect(splitText(ended)).toBe('last rollout: canary of v4, rolled back');
    expect(rolloutClass(ended)).toBe('cellops-rollout-rolled-back');
    expect(rolloutClass(status())).toBe('cellops-rollout-running');
  });

  it('shows a running rollout or an ended one with a decision, never none', () => {
    expect(showsRollout(null)).toBe(false);
    expect(showsRollout(undefined)).toBe(false);
    expect(showsRollout(status({ rollout: null, active: false }))).toBe(false);
    expect(showsRollout(status({ active: false, last_decision: null }))).toBe(false);
    expect(showsRollout(status({ active: false }))).toBe(true);
    expect(showsRollout(status({ last_decision: null }))).toBe(true);
  });

  it('tabulates each variant, the champion first, agreement only for a shadow', () => {
    const table = variantTable(status());
    expect(table.columns).toEqual(['variant', 'requests', 'error rate', 'p95 latency']);
    expect(table.rows).toEqual([
      ['champion v3', '200', '1%', '12.35 ms'],
      ['canary v4', '20', '0%', '12.35 ms']
    ]);
    const shadow = status({
      variants: {
        shadow: metrics({ agreement: 0.9567, dropped: 1, latency_p95_ms: null }),
        champion: metrics({ error_rate: null })
      }
    });
    shadow.rollout!.mode = 'shadow';
    const shadowTable = variantTable(shadow);
    expect(shadowTable.columns[4]).toBe('agreement');
    expect(shadowTable.rows).toEqual([
      ['champion v3', '200', '\u2013', '12.35 ms', ''],
      ['shadow v4', '200', '1%', '\u2013', '95.7%']
    ]);
  });

  it('formats rates with three significant digits', () => {
    expect(formatRate(0.012345)).toBe('1.23%');
    expect(formatRate(1)).toBe('100%');
    expect(formatRate(null)).toBe('\u2013');
    expect(formatRate(NaN)).toBe('\u2013');
  });

  it("lists each rule's status with both sides", () => {
    const lines = ruleLines(status().rules);
    expect(lines.map(l => [l.icon, l.className])).toEqual([
      ['\u2714', 'cellops-rule-pass'],
      ['\u2013', 'cellops-rule-skipped']
    ]);
    expect(lines[0].text).toBe(
      'canary.error_rate <= champion.error_rate + 0.01 ' +
        '(canary.error_rate = 0 <= champion.error_rate + 0.01 = 0.02)'
    );
    expect(lines[1].text).toBe('shadow.agreement >= 0.95');
    expect(ruleLines([{ condition: 'x', status: 'FAIL', sides: 'a' }])[0].className).toBe(
      'cellops-rule-fail'
    );
    expect(windowText(status())).toBe(
      'rules on the current window (60 s, at least 50 requests a variant)'
    );
  });

  it('says what the last decision did, when, by whom and on which rules', () => {
    expect(decisionText(status().last_decision!, time)).toBe(
      'started at 10% \u00b7 <2025-01-02T10:00:00+00:00> by ana'
    );
    const rolledBack = {
      action: 'rolled back',
      at: '2025-01-02T11:00:00+00:00',
      by: 'cellops serve',
      from: 10,
      to: 0,
      window: 4,
      rules: [{ rule: 'canary.error_rate <= champion.error_rate + 0.01', sides: '0.3 <= 0.02' }]
    };
    expect(decisionText(rolledBack, time)).toBe(
      'rolled back 10% \u2192 0% \u00b7 <2025-01-02T11:00:00+00:00> by cellops serve: ' +
        'canary.error_rate <= champion.error_rate + 0.01 (0.3 <= 0.02)'
    );
    expect(
      decisionText({ action: 'aborted', at: 'x', by: null, from: 25, to: 0, reason: 'enough' }, time)
    ).toBe('aborted 25% \u2192 0% \u00b7 <x>: enough');
  });
});
