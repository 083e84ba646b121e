// ecco's MinimalHighlighter, the one painter of the app (ecco_app/components/saliency.py mounts it
// as a Streamlit component) and of notebooks (ecco_core.notebook inlines it). Token text arrives as
// JSON and is only ever set with textContent, so a prompt such as <img src=x onerror=...> shows as
// text. A classic function declaration (no module syntax), so a notebook can inline it in <script>.
// component: { data, parentElement, setTriggerValue, onPaint? }; onPaint(pos) runs after each paint.
function eccoHighlighter(component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector(".ecco-sal");
  const info = parentElement.querySelector(".ecco-sal-info");
  root.replaceChildren();
  const rows = new Map(data.positions.map((p, i) => [p, data.values[i]]));
  const spans = [];
  let pinned = data.selected;
  function paint(pos) {
    const row = rows.get(pos);
    let top = 0;
    if (row) for (let j = data.scale_from; j < pos; j++) top = Math.max(top, Math.abs(row[j]));
    spans.forEach((span, j) => {
      span.classList.toggle("pinned", j === pinned);
      let color = "transparent";
      if (row && j < pos && top > 0 && row[j] !== 0) {
        const share = Math.min(Math.abs(row[j]) / top, 1);
        const alpha = (0.08 + 0.82 * share).toFixed(3);
        color = row[j] < 0 ? `rgba(228, 87, 46, ${alpha})` : `rgba(106, 61, 154, ${alpha})`;
      }
      if (j !== pos) span.style.backgroundColor = color;
      span.title = row && j < pos ? `${j}: ${row[j].toPrecision(3)} ${data.unit}` : `${j}`;
    });
    const token = data.shown[pos] === undefined ? "" : data.shown[pos].replace(/\n/g, "");
    info.textContent = row
      ? `Explaining ${JSON.stringify(token)} (position ${pos}): darker = larger ${data.unit}.`
      : `No scores for position ${pos} yet: click it to compute them.`;
    if (component.onPaint) component.onPaint(pos);
  }
  data.shown.forEach((text, pos) => {
    if (pos === data.n_input_tokens) {
      const marker = document.createElement("span");
      marker.className = "marker";
      marker.textContent = "▶";
      marker.title = "generated text starts here";
      root.appendChild(marker);
    }
    const span = document.createElement("span");
    span.className = "tok";
    span.textContent = text === "" ? "\u200b" : text;
    if (data.explainable.includes(pos)) {
      span.classList.add("out");
      if (rows.get(pos)) span.classList.add("ready");
      span.addEventListener("mouseenter", () => paint(pos));
      span.addEventListener("mouseleave", () => paint(pinned));
      span.addEventListener("click", () => {
        pinned = pos;
        paint(pos);
        setTriggerValue("clicked", pos);
      });
    }
    spans.push(span);
    root.appendChild(span);
  });
  paint(pinned);
}
