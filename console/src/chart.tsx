import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

export interface Series { label: string; values: (number | null)[]; color: string; dash?: number[] }

/**
 * A uPlot line chart of series over days (`x`: bucket starts, YYYY-MM-DD). The canvas is an
 * image to assistive technology, named by `label`; the page shows the same figures in a table.
 */
export function Chart(props: { label: string; x: string[]; series: Series[]; yFormat?: (v: number) => string; bars?: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const xs = props.x.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
    const width = Math.max(280, Math.min(el.clientWidth || 600, 900));
    const paths = props.bars ? uPlot.paths.bars!({ size: [0.6, 40] }) : undefined;
    const opts: uPlot.Options = {
      width,
      height: 220,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      legend: { show: true },
      cursor: { show: true },
      scales: { x: { time: true } },
      axes: [
        { stroke: '#333' },
        { stroke: '#333', values: (_u, ticks) => ticks.map((t) => (props.yFormat ? props.yFormat(t) : String(t))) },
      ],
      series: [
        {},
        ...props.series.map((s) => ({ label: s.label, stroke: s.color, width: 2, dash: s.dash, paths, fill: props.bars ? s.color : undefined, points: { show: true, size: 6 } })),
      ],
    };
    const plot = new uPlot(opts, [xs, ...props.series.map((s) => s.values)] as uPlot.AlignedData, el);
    const canvas = el.querySelector('canvas');
    canvas?.setAttribute('role', 'img');
    canvas?.setAttribute('aria-label', props.label);
    return () => plot.destroy();
  }, [props.label, props.x.join(), JSON.stringify(props.series)]);
  return <div class="chart" ref={box} data-chart={props.label} />;
}
