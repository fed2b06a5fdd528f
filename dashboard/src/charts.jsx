// Charts drawn as SVG by the page itself (no chart library: a bar chart and a line chart are a
// few dozen lines). Each chart is an image with a name for screen readers, followed by the same
// numbers as a table, so nothing is shown only as a picture.

const WIDTH = 640;
const HEIGHT = 220;
const PAD = 36;

function scaleOf(max) {
  return max > 0 ? (HEIGHT - 2 * PAD) / max : 0;
}

/** Bars: `data` is [{label, value, text}]. */
export function BarChart({ title, data, valueLabel }) {
  const max = Math.max(0, ...data.map((d) => d.value));
  const scale = scaleOf(max);
  const step = data.length ? (WIDTH - 2 * PAD) / data.length : 0;
  const bar = Math.min(48, Math.max(2, step * 0.7));
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={title}>
        <line x1={PAD} y1={HEIGHT - PAD} x2={WIDTH - PAD} y2={HEIGHT - PAD} class="axis" />
        {data.map((d, i) => {
          const h = d.value * scale;
          return (
            <rect x={PAD + i * step + (step - bar) / 2} y={HEIGHT - PAD - h} width={bar} height={h} class="bar">
              <title>{`${d.label}: ${d.text ?? d.value}`}</title>
            </rect>
          );
        })}
        {data.length > 0 && (
          <>
            <text x={PAD} y={HEIGHT - 10} class="tick">{data[0].label}</text>
            <text x={WIDTH - PAD} y={HEIGHT - 10} class="tick end">{data[data.length - 1].label}</text>
          </>
        )}
      </svg>
      <details>
        <summary>{valueLabel}</summary>
        <table>
          <tbody>
            {data.map((d) => (
              <tr>
                <th scope="row">{d.label}</th>
                <td class="num">{d.text ?? d.value}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}

/** A line through `points` ([x, y] in [0, 1] each), e.g. a precision-recall curve. */
export function LineChart({ title, points, xLabel, yLabel }) {
  const x = (v) => PAD + v * (WIDTH - 2 * PAD);
  const y = (v) => HEIGHT - PAD - v * (HEIGHT - 2 * PAD);
  const path = points.map(([px, py], i) => `${i ? "L" : "M"}${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(" ");
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={title}>
        <line x1={PAD} y1={HEIGHT - PAD} x2={WIDTH - PAD} y2={HEIGHT - PAD} class="axis" />
        <line x1={PAD} y1={PAD} x2={PAD} y2={HEIGHT - PAD} class="axis" />
        <path d={path} class="line" />
        <text x={WIDTH / 2} y={HEIGHT - 8} class="tick middle">{xLabel}</text>
        <text x={8} y={PAD - 10} class="tick">{yLabel}</text>
      </svg>
    </figure>
  );
}
