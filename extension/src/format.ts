/** How numbers and times read in the panel and the badges. */

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

/** A metric value with four significant digits, as `cellops steps` prints it (`%.4g`). */
export function formatNumber(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return '\u2013';
  }
  if (!isFinite(value)) {
    return String(value);
  }
  if (value !== 0 && (Math.abs(value) >= 1e4 || Math.abs(value) < 1e-4)) {
    return value.toExponential(3).replace(/\.?0+e/, 'e');
  }
  return String(Number(value.toPrecision(4)));
}

export function formatMetrics(metrics: { [name: string]: number }): string {
  return Object.keys(metrics)
    .map(name => `${name}=${formatNumber(metrics[name])}`)
    .join(', ');
}

export function formatPercent(share: number): string {
  return `${Math.round(share * 1000) / 10}%`;
}

/** An ISO time as `YYYY-MM-DD HH:MM` in the browser's zone ('' when missing). */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  if (isNaN(date.getTime())) {
    return iso;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}
