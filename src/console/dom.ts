/** Small DOM helpers of the console: no framework, no inline markup (the CSP allows no inline script). */

/** The element with `id`, which the page must have. */
export function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`console page lacks #${id}`);
  return element as T;
}

/** A new element with properties and children (text or elements). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> & { dataset?: Record<string, string> } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const { dataset, ...rest } = props;
  const element = Object.assign(document.createElement(tag), rest);
  if (dataset) Object.assign(element.dataset, dataset);
  element.append(...children);
  return element;
}

/** Replaces a select's options; keeps `selected` when it is one of them. */
export function fillSelect(select: HTMLSelectElement, options: { value: string; label: string }[], selected?: string): void {
  select.replaceChildren(...options.map((o) => el('option', { value: o.value, textContent: o.label, selected: o.value === selected })));
}
