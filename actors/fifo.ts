/**
 * A first-in, first-out queue whose `shift` is O(1): a head index walks the array, which is
 * compacted now and then, where `Array.prototype.shift` moves every element on each call (O(n) on
 * a long backlog).
 */

/** Entries taken before the array is compacted (and only once they are most of it). */
const COMPACT_AFTER = 1024;

/** A FIFO queue. */
export class Fifo<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  /** Entries waiting. */
  get length(): number {
    return this.items.length - this.head;
  }

  /** Appends an entry. */
  push(item: T): void {
    this.items.push(item);
  }

  /** The oldest entry, left in place; `undefined` when empty. */
  peek(): T | undefined {
    return this.items[this.head];
  }

  /** Takes the oldest entry; `undefined` when empty. */
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    // Not kept alive until the next compaction.
    this.items[this.head++] = undefined;
    if (this.head > COMPACT_AFTER && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Takes out the entries `which` selects, in order; the others keep theirs. */
  remove(which: (item: T) => boolean): T[] {
    const taken: T[] = [];
    const kept: T[] = [];
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i] as T;
      (which(item) ? taken : kept).push(item);
    }
    this.items = kept;
    this.head = 0;
    return taken;
  }
}
