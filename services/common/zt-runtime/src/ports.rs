//! Ports on loopback.

use std::net::{Ipv4Addr, TcpListener};

use crate::{Error, Result};

/// The kernel's ephemeral port range (outgoing connections take their local ports from it).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().filter_map(|x| x.parse().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32768, 60999))
}

/// A port that was free a moment ago and that this process has not handed out before (so that
/// labs started in parallel by one test binary do not pick the same one). It is taken below the
/// ephemeral range, so that no outgoing connection of another process can occupy it between
/// now and the moment the component binds it.
pub fn free_port() -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let (eph_low, _) = ephemeral_range();
    let (low, high) = (20000u16, eph_low.saturating_sub(1));
    for _ in 0..256 {
        let port = if high > low + 1000 {
            low + (uuid::Uuid::new_v4().as_u128() % u128::from(high - low)) as u16
        } else {
            // An unusual ephemeral range: fall back to a port the kernel picks.
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::io("finding a free port"))?;
            l.local_addr().map(|a| a.port()).map_err(Error::io("finding a free port"))?
        };
        let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) && is_free(port) && reserve(port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err(Error::config("ports", "no free port found on 127.0.0.1"))
}

/// How long a port handed out by [`free_port`] stays reserved for its taker.
const RESERVATION: std::time::Duration = std::time::Duration::from_secs(600);

/// Reserves `port` across processes for [`RESERVATION`] (a file per port in
/// `$TMPDIR/ztlab-ports`), so that labs started in parallel by several processes (tests, each
/// `ztlab up`) never pick the same free port before one of them binds it. False if another
/// process reserved it recently.
fn reserve(port: u16) -> bool {
    let dir = std::env::temp_dir().join("ztlab-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true;
    }
    let file = dir.join(port.to_string());
    let fresh = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < RESERVATION));
    if fresh {
        return false;
    }
    // Recreate it (an expired reservation is taken over), then make sure it is ours.
    let _ = std::fs::remove_file(&file);
    std::fs::OpenOptions::new().write(true).create_new(true).open(&file).is_ok()
}

/// Whether `port` can be bound on 127.0.0.1 now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// `Ok` if `port` is free; otherwise an error naming the field that pinned it.
pub fn ensure_free(field: &str, port: u16) -> Result<()> {
    if is_free(port) { Ok(()) } else { Err(Error::PortTaken { field: field.to_owned(), port }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_port_is_reported() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        let err = ensure_free("sites.a.server_port", port).expect_err("taken");
        assert!(err.to_string().contains("sites.a.server_port: port"), "{err}");
    }

    #[test]
    fn free_ports_are_not_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().expect("port")).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }
}
