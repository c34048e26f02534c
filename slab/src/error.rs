//! What can go wrong: [`SlabError`], and the [`CacheName`] it carries by value.

use core::fmt;

/// Longest cache name kept (bytes); longer names are cut at a character boundary.
pub(crate) const NAME_LEN: usize = 32;

/// A cache name held by value (errors outlive caches).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheName {
    pub(crate) bytes: [u8; NAME_LEN],
    pub(crate) len: u8,
}

impl CacheName {
    pub(crate) fn new(s: &str) -> CacheName {
        let mut bytes = [0u8; NAME_LEN];
        let mut len = s.len().min(NAME_LEN);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        CacheName {
            bytes,
            len: len as u8,
        }
    }
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Debug for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the slab allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabError {
    /// `Cache::create` with a zero size.
    ZeroSize,
    /// Alignment not a power of two, or larger than the source arena can guarantee.
    BadAlign {
        /// The alignment asked for (or derived).
        align: usize,
        /// The largest alignment the source allows.
        max: usize,
    },
    /// Size too large (chunk size overflows or no slab layout fits).
    TooLarge {
        /// The buffer size asked for.
        size: usize,
    },
    /// Contradictory flags (`NOTOUCH` with `NOHASH`, or an internal flag).
    BadFlags {
        /// The flags given.
        flags: u32,
    },
    /// The metadata arenas or the source arena are exhausted.
    NoMemory,
    /// The address is not a buffer of any slab of any cache.
    NotOwned {
        /// The address freed.
        addr: usize,
        /// The cache it was freed to.
        cache: CacheName,
    },
    /// The buffer belongs to another cache.
    WrongCache {
        /// The address freed.
        addr: usize,
        /// The cache it was freed to.
        cache: CacheName,
        /// The cache that owns it.
        owner: CacheName,
    },
    /// The address is inside a buffer of this cache but not at its start.
    BadAddress {
        /// The address freed.
        addr: usize,
        /// The start of the buffer it points into.
        buffer: usize,
        /// The cache it was freed to.
        cache: CacheName,
    },
    /// The buffer is already free (on its slab's free list, in a magazine, or marked free
    /// in its debug buftag).
    DoubleFree {
        /// The address freed.
        addr: usize,
        /// The cache it was freed to.
        cache: CacheName,
    },
    /// Debugging found the redzone word after the buffer overwritten (it is neither the
    /// redzone pattern nor an encoded size), or the buftag's status word neither
    /// allocated nor free.
    Redzone {
        /// The buffer.
        addr: usize,
        /// Its cache.
        cache: CacheName,
        /// The word found.
        found: u64,
    },
    /// Debugging found a byte past the requested end of the buffer changed (a write of
    /// `offset - size + 1` bytes past the end, at least).
    Overrun {
        /// The buffer.
        addr: usize,
        /// The size asked for (where the redzone starts).
        size: usize,
        /// Offset from the buffer's start of the first changed byte.
        offset: usize,
        /// The byte found there (the redzone holds `0xbb`).
        found: u8,
        /// Its cache.
        cache: CacheName,
    },
    /// Debugging found the word just before the buffer (the previous chunk's buftag
    /// status) changed: a write before the buffer's start.
    Underrun {
        /// The buffer.
        addr: usize,
        /// The word found before it.
        found: usize,
        /// Its cache.
        cache: CacheName,
    },
    /// Debugging found a write to a free buffer.
    ModifiedAfterFree {
        /// The buffer.
        addr: usize,
        /// Offset of the first modified word.
        offset: usize,
        /// The word found there (the fill is `0xdeadbeefdeadbeef`).
        found: u64,
        /// Its cache.
        cache: CacheName,
    },
    /// `destroy` of a cache that still has allocated objects (the cache stays usable).
    NotEmpty {
        /// Buffers still allocated.
        live: usize,
        /// The cache.
        cache: CacheName,
    },
    /// A word umem-slab keeps inside a slab was overwritten (a heap overflow or a write
    /// after free): a free chunk's free-list link that decodes to no chunk of its slab,
    /// or a slab record's owner tag.
    CorruptSlab {
        /// Which word.
        what: &'static str,
        /// The slab (its record's address).
        slab: usize,
        /// The bad word as found in memory.
        value: usize,
        /// The cache.
        cache: CacheName,
    },
    /// `verify` found a broken invariant.
    Corrupt {
        /// Which invariant.
        what: &'static str,
        /// Where (a slab, buffer or bufctl address, or a count).
        addr: usize,
        /// The cache.
        cache: CacheName,
    },
}

impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SlabError::*;
        match self {
            ZeroSize => write!(f, "cache buffer size is zero"),
            BadAlign { align, max } => write!(
                f,
                "alignment {align:#x} is not a power of two or exceeds {max:#x}"
            ),
            TooLarge { size } => write!(f, "buffer size {size:#x} too large"),
            BadFlags { flags } => write!(f, "invalid cache flags {flags:#x}"),
            NoMemory => write!(f, "out of memory for cache metadata"),
            NotOwned { addr, cache } => {
                write!(f, "free of {addr:#x} to cache {cache}: no slab owns it")
            }
            WrongCache { addr, cache, owner } => write!(
                f,
                "free of {addr:#x} to cache {cache}: buffer belongs to cache {owner}"
            ),
            BadAddress {
                addr,
                buffer,
                cache,
            } => write!(
                f,
                "free of {addr:#x} to cache {cache}: not a buffer start (buffer at {buffer:#x})"
            ),
            DoubleFree { addr, cache } => {
                write!(f, "duplicate free of {addr:#x} to cache {cache}")
            }
            Redzone { addr, cache, found } => write!(
                f,
                "redzone violation: write past the end of {addr:#x} in cache {cache} (redzone word {found:#018x})"
            ),
            Overrun {
                addr,
                size,
                offset,
                found,
                cache,
            } => write!(
                f,
                "redzone violation: write past the end of {addr:#x} in cache {cache}: {size}-byte request, byte at offset {offset} ({offset:#x}) is {found:#04x}, not 0xbb"
            ),
            Underrun { addr, found, cache } => write!(
                f,
                "redzone violation: write before the start of {addr:#x} in cache {cache} (the word before it is {found:#018x})"
            ),
            ModifiedAfterFree {
                addr,
                offset,
                found,
                cache,
            } => write!(
                f,
                "buffer {addr:#x} of cache {cache} modified after being freed (offset {offset:#x}: {found:#018x}, not 0xdeadbeefdeadbeef)"
            ),
            NotEmpty { live, cache } => {
                write!(f, "destroy of cache {cache} with {live} live buffers")
            }
            CorruptSlab {
                what,
                slab,
                value,
                cache,
            } => write!(
                f,
                "cache {cache}: slab {slab:#x}: {what} ({value:#x}): heap overflow or write after free"
            ),
            Corrupt { what, addr, cache } => {
                write!(f, "cache {cache} corrupt at {addr:#x}: {what}")
            }
        }
    }
}

impl std::error::Error for SlabError {}
