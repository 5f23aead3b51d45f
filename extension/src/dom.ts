/** A small element builder: the panel is plain DOM, rebuilt per section on each answer. */

type Child = Node | string | null | undefined | false;

export interface IAttrs {
  [name: string]: string | number | boolean | null | undefined | ((event: Event) => void);
}

export function h(tag: string, attrs: IAttrs = {}, ...children: (Child | Child[])[]): HTMLElement {
  const element = document.createElement(tag);
  setAttrs(element, attrs);
  append(element, children);
  return element;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg(tag: string, attrs: IAttrs = {}, ...children: Child[]): SVGElement {
  const element = document.createElementNS(SVG_NS, tag);
  setAttrs(element, attrs);
  append(element, children);
  return element;
}

function setAttrs(element: Element, attrs: IAttrs): void {
  for (const name of Object.keys(attrs)) {
    const value = attrs[name];
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (typeof value === 'function') {
      element.addEventListener(name.replace(/^on/, '').toLowerCase(), value);
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
}

function append(element: Element, children: (Child | Child[])[]): void {
  const flat = ([] as Child[]).concat(...children);
  for (const child of flat) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    element.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

/** Replace the contents of `element`. */
export function replace(element: Element, ...children: (Child | Child[])[]): void {
  element.replaceChildren();
  append(element, children);
}

/** A link that opens in a new tab, or the plain text when there is no URL. */
export function link(text: string, url: string | null, cls = ''): HTMLElement {
  if (!url) {
    return h('span', { class: cls }, text);
  }
  return h('a', { class: cls, href: url, target: '_blank', rel: 'noopener noreferrer' }, text);
}
