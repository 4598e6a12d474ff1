// A time-series chart (uPlot) as a Preact component. Values are plotted as
// numbers; what the chart shows as text (the legend) is formatted from the
// original decimal strings by `format(seriesIndex, rowIndex)`.
import { html, useEffect, useRef } from '../vendor/preact-htm.mjs';
import uPlot from '../vendor/uplot.mjs';

/**
 * @param {object} props
 * @param {number[]} props.x seconds since the epoch
 * @param {{label: string, values: (number|null)[], band?: boolean, marks?: boolean}[]} props.series
 *   `band`: a dashed interval bound; `marks`: points only (no line), for
 *   flagged periods such as anomalies
 * @param {(series: number, row: number) => string} [props.format]
 * @param {string} props.title accessible name
 */
export function Chart({ x, series, format, title, height = 240 }) {
  const box = useRef(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const width = Math.max(280, el.clientWidth || 600);
    const opts = {
      width,
      height,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { size: 70 }],
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.marks ? '#dc2626' : s.band ? 'rgba(37,99,235,0.35)' : ['#2563eb', '#16a34a', '#f59e0b'][i % 3],
          dash: s.band ? [4, 4] : undefined,
          ...(s.marks ? { paths: () => null, points: { show: true, size: 11, width: 2, fill: '#fff' } } : {}),
          value: format ? (_u, v, si, row) => (v === null || row === null ? '–' : format(si - 1, row)) : undefined,
        })),
      ],
    };
    const plot = new uPlot(opts, [x, ...series.map((s) => s.values)], el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [x, series, height]);
  return html`<figure class="chart" role="img" aria-label=${title}><div ref=${box}></div></figure>`;
}
