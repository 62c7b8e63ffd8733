/**
 * Sparse host memory backing guest RAM, keyed by host virtual frame number (hvfn = hva >> 12).
 *
 * Guest data lives at the memslot's `userspace_addr`, as in KVM: moving a slot to another gpa
 * keeps its contents, and two slots over the same hva alias. A 4 KiB frame gets backing on its
 * first write; reading a never-written frame returns zeros and allocates nothing.
 *
 * Layout (all typed arrays, nothing per frame but one Int32 slot):
 *
 *   directory: Map<leafKey, Int32Array(64)>    leafKey = floor(hvfn / 64)
 *     leaf[hvfn % 64] = frame index + 1        (0 = never written)
 *   slabs[frame >>> 6]: Uint32Array(64 * 1024) 64 frames of 1024 uint32 words each
 *     word w of frame f = slabs[f >>> 6][((f & 63) << 10) + w]
 *
 * A 16-entry direct-mapped cache of leaves keeps the walk hot path off the Map. Leaves of 64
 * entries (256 B) keep scattered touches cheap: 10,000 pages spread over 1 TiB cost at most
 * 10,000 leaves = 2.5 MB of directory on top of 40 MB of data.
 */

const LEAF_ENTRIES = 64;
const SLAB_FRAMES = 64;
const FRAME_WORDS = 1024;
const CACHE_SIZE = 16;
const FRAME_CACHE_SIZE = 64;
const EMPTY_SLAB = new Uint32Array(0);

/** Sparse, lazily backed memory. Offsets are byte offsets inside a 4 KiB frame. */
export class GuestMemory {
  private readonly directory = new Map<number, Int32Array>();
  private readonly slabs: Uint32Array[] = [];
  private frames = 0;
  private readonly cacheKey = new Float64Array(CACHE_SIZE).fill(-1);
  private readonly cacheLeaf: (Int32Array | null)[] = new Array(CACHE_SIZE).fill(null);
  // Direct-mapped cache of backed frames for wordIndex: hvfn -> (slab, word index).
  private readonly frameCacheKey: Float64Array = new Float64Array(FRAME_CACHE_SIZE).fill(-1);
  private readonly frameCacheSlab: Uint32Array[] = new Array(FRAME_CACHE_SIZE).fill(EMPTY_SLAB);
  private readonly frameCacheWord: Int32Array = new Int32Array(FRAME_CACHE_SIZE);

  /** Number of 4 KiB frames that have backing (were written at least once). */
  get framesAllocated(): number {
    return this.frames;
  }

  /** Bytes held by frame slabs plus directory leaves (an estimate of the backing cost). */
  get bytesAllocated(): number {
    return (
      this.slabs.length * SLAB_FRAMES * FRAME_WORDS * 4 + this.directory.size * LEAF_ENTRIES * 4
    );
  }

  /** Leaf of directory key `key` (= floor(hvfn / LEAF_ENTRIES)), through the leaf cache. */
  private leafFor(key: number): Int32Array | undefined {
    const c = key & (CACHE_SIZE - 1);
    if (this.cacheKey[c] === key) return this.cacheLeaf[c]!;
    const leaf = this.directory.get(key);
    if (leaf !== undefined) {
      this.cacheKey[c] = key;
      this.cacheLeaf[c] = leaf;
    }
    return leaf;
  }

  /** Frame index + 1 for `hvfn`, or 0 if it has never been written. */
  private frameOf(hvfn: number): number {
    // hvfn may exceed int32 (hva up to 2^47), so no `& 63`; and `%` on a non-Smi number is an
    // fmod call in V8: take the remainder by multiply and subtract instead.
    const key = Math.floor(hvfn / LEAF_ENTRIES);
    const leaf = this.leafFor(key);
    return leaf === undefined ? 0 : leaf[hvfn - key * LEAF_ENTRIES]!;
  }

  /** Frame index + 1 for `hvfn`, allocating backing if needed. */
  private frameForWrite(hvfn: number): number {
    const key = Math.floor(hvfn / LEAF_ENTRIES);
    let leaf = this.leafFor(key);
    if (leaf === undefined) {
      leaf = new Int32Array(LEAF_ENTRIES);
      this.directory.set(key, leaf);
      const c = key & (CACHE_SIZE - 1);
      this.cacheKey[c] = key;
      this.cacheLeaf[c] = leaf;
    }
    const i = hvfn - key * LEAF_ENTRIES;
    let f = leaf[i]!;
    if (f === 0) {
      const frame = this.frames++;
      if ((frame & (SLAB_FRAMES - 1)) === 0)
        this.slabs.push(new Uint32Array(SLAB_FRAMES * FRAME_WORDS));
      f = frame + 1;
      leaf[i] = f;
    }
    return f;
  }

  /**
   * Slab holding the frame found by the last {@link wordIndex} call (hot-path accessor: one
   * directory lookup, then the caller reads words directly).
   */
  slab: Uint32Array = EMPTY_SLAB;

  /**
   * Index of word 0 of frame `hvfn` in {@link slab}, or -1 if the frame has never been written
   * (reads as zeros).
   */
  wordIndex(hvfn: number): number {
    // Frames are never freed or moved, so a backed frame's place can be remembered for good.
    const c = (hvfn | 0) & (FRAME_CACHE_SIZE - 1);
    if (this.frameCacheKey[c] === hvfn) {
      this.slab = this.frameCacheSlab[c]!;
      return this.frameCacheWord[c]!;
    }
    const f = this.frameOf(hvfn) - 1;
    if (f < 0) return -1;
    const slab = this.slabs[f >>> 6]!;
    const wi = (f & 63) << 10;
    this.frameCacheKey[c] = hvfn;
    this.frameCacheSlab[c] = slab;
    this.frameCacheWord[c] = wi;
    this.slab = slab;
    return wi;
  }

  /** Whether the frame has backing. */
  isBacked(hvfn: number): boolean {
    return this.frameOf(hvfn) !== 0;
  }

  /** Read the aligned uint32 at byte `offset` (multiple of 4) of frame `hvfn`. */
  read32(hvfn: number, offset: number): number {
    const f = this.frameOf(hvfn) - 1;
    if (f < 0) return 0;
    return this.slabs[f >>> 6]![((f & 63) << 10) + (offset >>> 2)]!;
  }

  /** Write the aligned uint32 at byte `offset` (multiple of 4) of frame `hvfn`. */
  write32(hvfn: number, offset: number, value: number): void {
    if (value === 0 && this.frameOf(hvfn) === 0) return; // storing zero into zeros needs no backing
    const f = this.frameForWrite(hvfn) - 1;
    this.slabs[f >>> 6]![((f & 63) << 10) + (offset >>> 2)] = value;
  }

  /**
   * Compare-and-exchange of an aligned uint32 (the guest walker's A/D update is a locked cmpxchg).
   * Returns true if memory held `expected` and now holds `value`.
   */
  cmpxchg32(hvfn: number, offset: number, expected: number, value: number): boolean {
    if (this.read32(hvfn, offset) !== expected >>> 0) return false;
    this.write32(hvfn, offset, value);
    return true;
  }

  /** Read one byte. */
  read8(hvfn: number, offset: number): number {
    return (this.read32(hvfn, offset & ~3) >>> ((offset & 3) * 8)) & 0xff;
  }

  /** Write one byte. */
  write8(hvfn: number, offset: number, value: number): void {
    const w = offset & ~3;
    const shift = (offset & 3) * 8;
    const old = this.read32(hvfn, w);
    this.write32(hvfn, w, ((old & ~(0xff << shift)) | ((value & 0xff) << shift)) >>> 0);
  }
}
