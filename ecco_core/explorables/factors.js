// ecco's factor explorer in a notebook: the text painted per factor (highlight.factor_html, the
// app's painter, renders every painting in Python) and one sparkline chip per factor. Hovering a
// chip shows that factor's painting; clicking pins it; leaving shows the pinned one. No HTML is
// built here: the paintings and chips arrive escaped, and this only switches what is visible.
function eccoFactors(root) {
  const paintings = Array.from(root.querySelectorAll(".ecco-painting"));
  const chips = Array.from(root.querySelectorAll(".ecco-chip"));
  let pinned = "all";
  function show(key) {
    paintings.forEach((p) => { p.style.display = p.dataset.key === key ? "" : "none"; });
    chips.forEach((c) => { c.classList.toggle("active", c.dataset.key === key); });
  }
  chips.forEach((chip) => {
    chip.addEventListener("mouseenter", () => show(chip.dataset.key));
    chip.addEventListener("mouseleave", () => show(pinned));
    chip.addEventListener("click", () => {
      pinned = pinned === chip.dataset.key ? "all" : chip.dataset.key;
      show(pinned);
    });
  });
  show(pinned);
}
