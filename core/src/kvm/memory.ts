/**
 * Sparse host memory backing guest RAM, keyed by host virtual frame number (hvfn = hva >> 12).
 *
 * Guest data lives at the memslot's `userspace_addr`, as in KVM: moving a slot to another gpa
 * keeps its contents, and two slots over the same hva alias. A 4 KiB frame gets backing on its
 * first write; reading a never-written frame returns zeros and allocates nothing.
 *
 * Layout (typed arrays, nothing per frame but one Int32 slot):
 *
 *   directory: Map<leafKey, Int32Array(64)>    leafKey = floor(hvfn / 64)
 *     leaf[hvfn % 64] = frame index + 1        (0 = never written)
 *   arena: Uint32Array                         every backed frame's 1024 words, frame f at
 *                                              word f * 1024 (`frameWord`)
 *
 * One arena rather than a slab per few frames: a reader holding the arena and a frame's word
 * index reaches an entry in one load, which is what the guest walk does per level. The arena
 * grows by doubling (frames keep their word index) up to {@link MAX_FRAMES}; only the pages the
 * host touches count in RSS. A 16-entry cache of leaves keeps lookups off the Map; leaves of 64
 * entries (256 B) keep scattered touches cheap: 10,000 pages spread over 1 TiB cost at most
 * 10,000 leaves = 2.5 MB of directory on top of 40 MB of data.
 */
import { MmuLabError } from "../errors";
import { HEAP_MAP_LEAF_BYTES, HEAP_TYPED_ARRAY_BYTES, MC, MemCg } from "./memcg";

const LEAF_ENTRIES = 64;
const FRAME_WORDS = 1024;
const CACHE_SIZE = 16;
const FRAME_CACHE_SIZE = 64;
/** Frames the arena starts with (1 MiB). */
const INITIAL_FRAMES = 256;
/** At most 2^21 frames (8 GiB of written guest memory): word indices stay below 2^31. */
export const MAX_FRAMES = 2 ** 21;

/** Sparse, lazily backed memory. Offsets are byte offsets inside a 4 KiB frame. */
export class GuestMemory {
  /**
   * The account the arena and the leaves are charged to (category `guestMemory`). A write that
   * needs a new leaf or a larger arena checks it first and throws ResourceLimitError with nothing
   * changed; the host analogue is a page allocation failing when the VM touches new memory.
   */
  readonly memcg: MemCg;
  private readonly directory = new Map<number, Int32Array>();
  private frames = 0;
  /** Every backed frame's words; frame f at word f * 1024. Replaced (copied) when it grows. */
  arena: Uint32Array = new Uint32Array(INITIAL_FRAMES * FRAME_WORDS);
  private readonly cacheKey = new Float64Array(CACHE_SIZE).fill(-1);
  private readonly cacheLeaf: (Int32Array | null)[] = new Array(CACHE_SIZE).fill(null);
  // Direct-mapped cache of backed frames for frameWord: hvfn -> word index.
  private readonly frameCacheKey: Float64Array = new Float64Array(FRAME_CACHE_SIZE).fill(-1);
  private readonly frameCacheWord: Int32Array = new Int32Array(FRAME_CACHE_SIZE);

  /** `memcg`: the VM's account (default: an unlimited one of its own, for standalone use). */
  constructor(memcg: MemCg = new MemCg(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)) {
    this.memcg = memcg;
    memcg.charge(MC.guestMemory, this.arena.byteLength, HEAP_TYPED_ARRAY_BYTES);
  }

  /** Number of 4 KiB frames that have backing (were written at least once). */
  get framesAllocated(): number {
    return this.frames;
  }

  /** Bytes of backed frames plus directory leaves (the backing cost). */
  get bytesAllocated(): number {
    return this.frames * FRAME_WORDS * 4 + this.directory.size * LEAF_ENTRIES * 4;
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
    if (leaf === undefined || leaf[hvfn - key * LEAF_ENTRIES] === 0) this.checkBacking(leaf);
    if (leaf === undefined) {
      this.memcg.charge(MC.guestMemory, LEAF_ENTRIES * 4, HEAP_MAP_LEAF_BYTES);
      leaf = new Int32Array(LEAF_ENTRIES);
      this.directory.set(key, leaf);
      const c = key & (CACHE_SIZE - 1);
      this.cacheKey[c] = key;
      this.cacheLeaf[c] = leaf;
    }
    const i = hvfn - key * LEAF_ENTRIES;
    let f = leaf[i]!;
    if (f === 0) {
      const frame = this.frames;
      if (frame >= MAX_FRAMES) {
        throw new MmuLabError(
          `guest memory: ${MAX_FRAMES} frames (8 GiB) are backed already; the simulator keeps at most that much written guest memory`,
        );
      }
      if ((frame + 1) * FRAME_WORDS > this.arena.length) this.grow();
      this.frames = frame + 1;
      f = frame + 1;
      leaf[i] = f;
    }
    return f;
  }

  /** The arena's length after its next growth. */
  private grownLength(): number {
    return Math.min(this.arena.length * 2, MAX_FRAMES * FRAME_WORDS);
  }

  /**
   * Budget check before a frame gets backing: a new leaf when `leaf` is missing, and a grown
   * arena when the arena is full (the old and the new arena both exist while it is copied).
   */
  private checkBacking(leaf: Int32Array | undefined): void {
    let bytes = leaf === undefined ? LEAF_ENTRIES * 4 : 0;
    let heap = leaf === undefined ? HEAP_MAP_LEAF_BYTES : 0;
    if (this.frames < MAX_FRAMES && (this.frames + 1) * FRAME_WORDS > this.arena.length) {
      bytes += this.grownLength() * 4;
      heap += HEAP_TYPED_ARRAY_BYTES;
    }
    if (bytes !== 0 && !this.memcg.fits(bytes, heap))
      this.memcg.check(
        `guest memory: backing for frame ${this.frames + 1} (a first write)`,
        bytes,
        heap,
      );
  }

  private grow(): void {
    const next = new Uint32Array(this.grownLength());
    next.set(this.arena);
    this.memcg.charge(MC.guestMemory, next.byteLength - this.arena.byteLength);
    this.arena = next;
  }

  /**
   * Index of word 0 of frame `hvfn` in {@link arena}, or -1 if the frame has never been written
   * (it reads as zeros). The index stays valid when the arena grows.
   */
  frameWord(hvfn: number): number {
    // Frames are never freed or moved, so a backed frame's place can be remembered for good.
    const c = (hvfn | 0) & (FRAME_CACHE_SIZE - 1);
    if (this.frameCacheKey[c] === hvfn) return this.frameCacheWord[c]!;
    const f = this.frameOf(hvfn) - 1;
    if (f < 0) return -1;
    const wi = f * FRAME_WORDS;
    this.frameCacheKey[c] = hvfn;
    this.frameCacheWord[c] = wi;
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
    return this.arena[f * FRAME_WORDS + (offset >>> 2)]!;
  }

  /** Write the aligned uint32 at byte `offset` (multiple of 4) of frame `hvfn`. */
  write32(hvfn: number, offset: number, value: number): void {
    if (value === 0 && this.frameOf(hvfn) === 0) return; // storing zero into zeros needs no backing
    const f = this.frameForWrite(hvfn) - 1;
    this.arena[f * FRAME_WORDS + (offset >>> 2)] = value;
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
