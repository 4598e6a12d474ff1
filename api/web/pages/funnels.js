// Funnels: a builder for `/v1/analytics/funnel` (steps with property
// filters, window, order mode, exclusions, person or session, breakdown);
// its table and bars are the answer's numbers.
import { html, useState } from '../vendor/preact-htm.mjs';

import * as fmt from '../lib/format.js';
import { Failed, RangePicker, Table, query, rangeParams, useApi, useRange } from '../lib/ui.js';

const SUGGESTED = ['Page Viewed', 'Product Viewed', 'Product Added', 'Checkout Started', 'Order Completed', 'Service Viewed', 'Booking Created', 'Booking Completed', 'Lead Created'];
const OPS = [['eq', '='], ['neq', '≠'], ['contains', 'contains'], ['gt', '>'], ['lt', '<'], ['is_set', 'is set']];

function StepEditor({ index, step, onChange, onRemove, canRemove }) {
  const setFilter = (i, patch) => onChange({ ...step, filters: step.filters.map((f, j) => (j === i ? { ...f, ...patch } : f)) });
  return html`
    <fieldset class="step">
      <legend>Step ${index + 1}</legend>
      <label>Event<input list="beacon-events" value=${step.event} onInput=${(e) => onChange({ ...step, event: e.target.value })} /></label>
      ${step.filters.map(
        (f, i) => html`<div class="filter">
          <label class="inline">Property<input value=${f.property} onInput=${(e) => setFilter(i, { property: e.target.value })} /></label>
          <label class="inline">Is
            <select value=${f.op} onChange=${(e) => setFilter(i, { op: e.target.value })}>${OPS.map(([op, label]) => html`<option value=${op}>${label}</option>`)}</select>
          </label>
          ${f.op !== 'is_set' && html`<label class="inline">Value<input value=${f.value} onInput=${(e) => setFilter(i, { value: e.target.value })} /></label>`}
          <button type="button" onClick=${() => onChange({ ...step, filters: step.filters.filter((_, j) => j !== i) })}>Remove filter</button>
        </div>`,
      )}
      <div class="actions">
        <button type="button" onClick=${() => onChange({ ...step, filters: [...step.filters, { property: '', op: 'eq', value: '' }] })}>Add a filter</button>
        ${canRemove && html`<button type="button" onClick=${onRemove}>Remove step ${index + 1}</button>`}
      </div>
    </fieldset>
  `;
}

/** The answer's request fields from the builder's state. */
export function funnelRequest(state) {
  const step = (s) => {
    const out = { event: s.event.trim() };
    const filters = s.filters
      .filter((f) => f.property.trim())
      .map((f) => (f.op === 'is_set' ? { property: f.property.trim(), op: 'is_set' } : { property: f.property.trim(), op: f.op, value: f.value }));
    if (filters.length) out.filters = filters;
    return out;
  };
  const request = {
    steps: state.steps.filter((s) => s.event.trim()).map(step),
    window: state.window,
    mode: state.mode,
    count_by: state.countBy,
  };
  const exclude = state.exclude.trim();
  if (exclude) request.exclude = [{ event: exclude }];
  if (state.breakdown.trim()) request.breakdown = state.breakdown.trim();
  return request;
}

export function Funnels({ app }) {
  const [range, setRange] = useRange('30d');
  const [state, setState] = useState({
    steps: [
      { event: 'Product Viewed', filters: [] },
      { event: 'Order Completed', filters: [] },
    ],
    window: '14d',
    mode: 'sequential',
    countBy: 'person',
    exclude: '',
    breakdown: '',
  });
  const [asked, setAsked] = useState(null);
  const set = (patch) => setState({ ...state, ...patch });
  const params = rangeParams(range);
  const [answer, error] = useApi(app.client, asked && params && `/v1/analytics/funnel?${query({ ...params, ...asked })}`);
  const steps = (answer && answer.steps) || [];
  const first = steps.length ? steps[0].entered : 0;
  return html`
    <h1>Funnels</h1>
    <datalist id="beacon-events">${SUGGESTED.map((e) => html`<option value=${e} />`)}</datalist>
    <form class="funnel" onSubmit=${(e) => (e.preventDefault(), setAsked(funnelRequest(state)))}>
      <${RangePicker}
        value=${range}
        onChange=${setRange}
        app=${app}
        page="funnels"
        extra=${state}
        onExtra=${(x) => {
          setState(x);
          setAsked(funnelRequest(x));
        }}
      />
      ${state.steps.map(
        (s, i) => html`<${StepEditor}
          index=${i}
          step=${s}
          canRemove=${state.steps.length > 2}
          onChange=${(next) => set({ steps: state.steps.map((x, j) => (j === i ? next : x)) })}
          onRemove=${() => set({ steps: state.steps.filter((_, j) => j !== i) })}
        />`,
      )}
      <div class="actions">
        <button type="button" onClick=${() => set({ steps: [...state.steps, { event: '', filters: [] }] })} disabled=${state.steps.length >= 30}>Add a step</button>
      </div>
      <div class="options">
        <label class="inline">Within<input value=${state.window} onInput=${(e) => set({ window: e.target.value })} size="6" /></label>
        <label class="inline">Order
          <select value=${state.mode} onChange=${(e) => set({ mode: e.target.value })}>
            <option value="sequential">In order</option><option value="strict">Strictly in order</option><option value="any">Any order</option>
          </select>
        </label>
        <label class="inline">Count
          <select value=${state.countBy} onChange=${(e) => set({ countBy: e.target.value })}>
            <option value="person">People</option><option value="session">Sessions</option>
          </select>
        </label>
        <label class="inline">Leave out who did<input list="beacon-events" value=${state.exclude} onInput=${(e) => set({ exclude: e.target.value })} /></label>
        <label class="inline">Split by property<input value=${state.breakdown} onInput=${(e) => set({ breakdown: e.target.value })} /></label>
      </div>
      <button type="submit">Show the funnel</button>
    </form>
    ${error && html`<${Failed} error=${error} />`}
    ${answer &&
    html`<div class="card wide" data-funnel="answer">
      <p class="summary" role="status">
        ${`${fmt.count(answer.summary.entered)} entered, ${fmt.count(answer.summary.converted)} converted (${fmt.percent(answer.summary.conversion_rate)})`}
        ${answer.excluded ? ` · ${fmt.count(answer.excluded)} left out` : ''}
      </p>
      <ol class="bars">
        ${steps.map(
          (s, i) => html`<li data-step=${i + 1} data-entered=${s.entered}>
            <span class="bar-label">${i + 1}. ${s.event || asked.steps[i].event}</span>
            <span class="bar"><span class="bar-fill" style=${{ width: `${first ? (100 * s.entered) / first : 0}%` }}></span></span>
            <span class="num">${fmt.count(s.entered)} · ${fmt.percent(s.conversion_from_start)}</span>
          </li>`,
        )}
      </ol>
      <${Table}
        rows=${steps.map((s, i) => ({ ...s, step: `${i + 1}. ${s.event || asked.steps[i].event}` }))}
        columns=${[
          ['step', 'Step', 'text'],
          ['entered', 'Entered', 'count'],
          ['converted', 'Went on', 'count'],
          ['conversion_from_previous', 'From previous', 'percent'],
          ['conversion_from_start', 'From start', 'percent'],
          ['drop_off', 'Dropped', 'count'],
          ['median_seconds_from_previous', 'Median seconds from previous', 'number'],
        ]}
      />
    </div>`}
  `;
}
