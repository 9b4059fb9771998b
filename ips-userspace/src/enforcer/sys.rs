//! Raw `bpf(2)` map commands that aya 0.14 does not expose: batch update, delete and lookup,
//! so that a million entries take a few hundred syscalls instead of a million.
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// `ENOTSUPP`, the kernel-internal "not supported" that leaks to userspace for batch ops.
const ENOTSUPP: i32 = 524;

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<()> {
    // SAFETY: `attr` is a live, correctly laid out `bpf_attr` prefix for `cmd`; its pointers
    // refer to buffers that outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// True if the error means "this map type has no batch op".
pub fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
    )
}

/// Updates (inserts or overwrites) one element.
pub fn update(fd: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
}

/// Deletes one element; a missing key is not an error.
pub fn delete(fd: BorrowedFd<'_>, key: &[u8]) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Reads one element into `value`; `Ok(false)` if absent.
pub fn lookup(fd: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The key after `key` (the first key if `None`) into `next`; `Ok(false)` at the end.
pub fn next_key(fd: BorrowedFd<'_>, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
    let mut attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key.map_or(0, |k| k.as_ptr() as u64),
        value: next.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Updates `keys.len() / key_size` elements in as few syscalls as the kernel allows, falling
/// back to one syscall per element for map types without batch ops.
pub fn update_batch(
    fd: BorrowedFd<'_>,
    keys: &[u8],
    values: &[u8],
    key_size: usize,
    value_size: usize,
) -> io::Result<()> {
    let n = keys.len() / key_size;
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(65_536);
        let mut attr = BatchAttr {
            keys: keys[done * key_size..].as_ptr() as u64,
            values: values[done * value_size..].as_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        match bpf(BPF_MAP_UPDATE_BATCH, &mut attr) {
            Ok(()) => done += chunk,
            Err(e) if unsupported(&e) && attr.count == 0 => {
                for i in done..n {
                    update(
                        fd,
                        &keys[i * key_size..(i + 1) * key_size],
                        &values[i * value_size..(i + 1) * value_size],
                    )?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes `keys.len() / key_size` elements; keys that are not there are skipped.
pub fn delete_batch(fd: BorrowedFd<'_>, keys: &[u8], key_size: usize) -> io::Result<()> {
    let n = keys.len() / key_size;
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(65_536);
        let mut attr = BatchAttr {
            keys: keys[done * key_size..].as_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        match bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => done += chunk,
            // The batch stops at the first missing key: skip it and go on.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => done += attr.count as usize + 1,
            Err(e) if unsupported(&e) && attr.count == 0 => {
                for i in done..n {
                    delete(fd, &keys[i * key_size..(i + 1) * key_size])?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Calls `each(key, value)` for every element, by batch lookup where the map supports it and
/// by key iteration otherwise.
pub fn for_each(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    each: &mut dyn FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    const CHUNK: usize = 8192;
    let mut keys = vec![0u8; key_size * CHUNK];
    let mut values = vec![0u8; value_size * CHUNK];
    // The batch token is a bucket index for hash maps and a key for others: size it for both.
    let token_size = key_size.max(8);
    let mut token_in = vec![0u8; token_size];
    let mut token_out = vec![0u8; token_size];
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token_in.as_ptr() as u64 },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let end = match &result {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) if first && unsupported(e) => {
                return iterate(fd, key_size, value_size, each);
            }
            Err(_) => return result,
        };
        for i in 0..attr.count as usize {
            each(
                &keys[i * key_size..(i + 1) * key_size],
                &values[i * value_size..(i + 1) * value_size],
            );
        }
        if end {
            return Ok(());
        }
        token_in.copy_from_slice(&token_out);
        first = false;
    }
}

fn iterate(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    each: &mut dyn FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    let mut key = vec![0u8; key_size];
    let mut next = vec![0u8; key_size];
    let mut value = vec![0u8; value_size];
    let mut have = next_key(fd, None, &mut next)?;
    while have {
        key.copy_from_slice(&next);
        if lookup(fd, &key, &mut value)? {
            each(&key, &value);
        }
        have = next_key(fd, Some(&key), &mut next)?;
    }
    Ok(())
}
