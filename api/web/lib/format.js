// Money, numbers and dates for display, in the workspace's currency and
// time zone and the browser's locale.
//
// Money arrives as decimal text ("1234.5000") and is formatted from the
// text: Intl.NumberFormat formats a decimal string exactly (no binary
// floating point on the way), rounding half away from zero like the
// server's `aov`.

const cache = new Map();

function numberFormat(options) {
  const key = JSON.stringify(options);
  if (!cache.has(key)) cache.set(key, new Intl.NumberFormat(undefined, options));
  return cache.get(key);
}

/** "1234.5000" in EUR -> "€1,234.50". Null or empty -> "–". */
export function money(text, currency) {
  if (text === null || text === undefined || text === '') return '–';
  return numberFormat({ style: 'currency', currency: currency || 'USD', roundingMode: 'halfExpand' }).format(String(text));
}

/** A count: 12345 -> "12,345". */
export function count(n) {
  if (n === null || n === undefined) return '–';
  return numberFormat({ maximumFractionDigits: 0 }).format(n);
}

/** A plain number with at most `digits` decimals: 14.35 -> "14.4". */
export function number(n, digits = 2) {
  if (n === null || n === undefined) return '–';
  return numberFormat({ maximumFractionDigits: digits }).format(n);
}

/** A rate 0..1 -> "42.5%". */
export function percent(rate, digits = 1) {
  if (rate === null || rate === undefined || Number.isNaN(rate)) return '–';
  return numberFormat({ style: 'percent', minimumFractionDigits: digits, maximumFractionDigits: digits }).format(rate);
}

/** A relative change (0.12) -> "+12.0%"; null (no base) -> "new". */
export function change(rate) {
  if (rate === null || rate === undefined) return 'new';
  return numberFormat({ style: 'percent', signDisplay: 'exceptZero', maximumFractionDigits: 1, minimumFractionDigits: 1 }).format(rate);
}

/** A time in the workspace's zone: "Dec 7, 14:05:09". */
export function time(iso, timeZone) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return new Intl.DateTimeFormat(undefined, {
    timeZone: timeZone || 'UTC',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).format(date);
}

/** A local day "2026-12-07" -> "Dec 7". */
export function day(text) {
  const [y, m, d] = String(text).split('-').map(Number);
  if (!y || !m || !d) return String(text);
  return new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' }).format(Date.UTC(y, m - 1, d));
}
