/** The drift share over time as a small inline SVG polyline (no chart library). */

export interface ISparkline {
  /** the `points` attribute of an SVG polyline, or '' for no data */
  points: string;
  /** the last point, to mark it */
  last: { x: number; y: number } | null;
  /** where the threshold line sits (y), when one is given */
  thresholdY: number | null;
}

/**
 * Shares in [0, 1] (oldest first) laid out in a width x height box, 0 at the bottom and 1 at
 * the top, so sparklines of different models read alike. One check is a flat line.
 */
export function sparkline(
  shares: number[],
  width: number,
  height: number,
  threshold: number | null = null,
  pad = 2
): ISparkline {
  const values = shares.filter(v => typeof v === 'number' && isFinite(v));
  const y = (v: number) =>
    round(pad + (1 - Math.min(1, Math.max(0, v))) * (height - 2 * pad));
  const thresholdY = threshold === null ? null : y(threshold);
  if (values.length === 0) {
    return { points: '', last: null, thresholdY };
  }
  const series = values.length === 1 ? [values[0], values[0]] : values;
  const step = (width - 2 * pad) / (series.length - 1);
  const coords = series.map((v, i) => ({ x: round(pad + i * step), y: y(v) }));
  return {
    points: coords.map(c => `${c.x},${c.y}`).join(' '),
    last: coords[coords.length - 1],
    thresholdY
  };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
