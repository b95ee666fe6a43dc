// The model legend: one button per model seen on the page, in its colour, with its kind. A
// click shows or hides that model's boxes on every tile (and in the large view).
import { knownModels, onModelsChange, setShown } from "./overlay.js";

export class Legend {
  constructor(root, onToggle) {
    this.root = root;
    this.onToggle = onToggle;
    onModelsChange(() => this.render());
    this.render();
  }

  render() {
    const models = knownModels().sort(([a], [b]) => a.localeCompare(b));
    this.root.hidden = models.length === 0;
    const buttons = models.map(([name, m]) => {
      const b = document.createElement("button");
      b.className = "legend-model";
      b.dataset.model = name;
      b.dataset.kind = m.kind;
      b.style.setProperty("--c", m.colour);
      b.setAttribute("aria-pressed", String(m.shown));
      b.title = `${m.shown ? "hide" : "show"} ${name}'s boxes`;
      const kind = document.createElement("small");
      kind.textContent = m.kind;
      b.append(name, " ", kind);
      b.addEventListener("click", () => {
        setShown(name, !m.shown);
        this.onToggle();
      });
      return b;
    });
    this.root.replaceChildren(...buttons);
  }
}
