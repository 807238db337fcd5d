/** An image a run or comparison wrote, as the server lists it. */
export interface OutputImage {
  readonly name: string;
  readonly mtimeMs: number;
}

/** A comparison as the page knows it. */
export interface PageComparison {
  readonly id: number;
  readonly name: string;
  readonly dir?: string;
  table?: string;
  images: readonly OutputImage[];
}

const cells = (line: string) =>
  line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split('|')
    .map((c) => c.trim().replace(/\*\*(.*?)\*\*/g, '$1'));

/**
 * `compare_table.md` as HTML: each pipe table as a table (its header row, its rows; the `---` row
 * dropped), every other non-empty line as a paragraph. Text only: nothing in the file becomes markup.
 */
export function markdownTables(text: string): HTMLElement[] {
  const out: HTMLElement[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.trim().startsWith('|')) {
      if (line.trim() !== '')
        out.push(Object.assign(document.createElement('p'), { textContent: line.trim() }));
      continue;
    }
    const block: string[] = [];
    while (i < lines.length && lines[i]!.trim().startsWith('|')) block.push(lines[i++]!);
    i--;
    const table = document.createElement('table');
    table.className = 'summary';
    const rows = block.filter((l) => !/^\s*\|?\s*:?-{3,}/.test(l));
    rows.forEach((row, r) => {
      const tr = document.createElement('tr');
      for (const cell of cells(row))
        tr.append(Object.assign(document.createElement(r === 0 ? 'th' : 'td'), { textContent: cell }));
      (r === 0 ? table.createTHead() : (table.tBodies[0] ?? table.createTBody())).append(tr);
    });
    out.push(table);
  }
  return out;
}

/** A figure of an image the board serves, captioned. */
export function imageFigure(src: string, caption: string, mtimeMs: number): HTMLElement {
  const figure = document.createElement('figure');
  const img = document.createElement('img');
  img.src = `${src}?v=${Math.round(mtimeMs)}`;
  img.alt = caption;
  img.loading = 'lazy';
  const link = Object.assign(document.createElement('a'), { href: src, target: '_blank' });
  link.append(img);
  figure.append(link, Object.assign(document.createElement('figcaption'), { textContent: caption }));
  return figure;
}

/** The comparisons' sections: each one's summary table (compare_table.md) and its plots. */
export function comparisonSections(comparisons: readonly PageComparison[]): HTMLElement[] {
  return comparisons
    .filter((c) => c.table !== undefined || c.images.length > 0)
    .map((c) => {
      const section = document.createElement('section');
      section.className = 'comparison';
      section.id = `comparison-${c.id}`;
      const heading = Object.assign(document.createElement('h2'), { textContent: `comparison: ${c.name}` });
      if (c.dir !== undefined) heading.title = c.dir;
      section.append(heading);
      if (c.table !== undefined) section.append(...markdownTables(c.table));
      const figures = document.createElement('div');
      figures.className = 'figures';
      figures.append(
        ...c.images.map((i) =>
          imageFigure(
            `/comparisons/${c.id}/${encodeURIComponent(i.name)}`,
            `${c.name}: ${i.name}`,
            i.mtimeMs,
          ),
        ),
      );
      section.append(figures);
      return section;
    });
}
