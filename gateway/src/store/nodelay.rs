//! TCP_NODELAY for the PostgreSQL connections.
//!
//! sqlx 0.9.0 opens its TCP connections without TCP_NODELAY (sqlx issue #4335; the fix, pull
//! request #4336, is merged upstream but not released). With Nagle's algorithm on, a message the
//! socket takes in two writes — a statement larger than the free send buffer, 16 KiB on a new
//! Linux socket — has its tail held back until the server acknowledges the head, and the server
//! delays that acknowledgement by some 40 ms: measured here as multi-row statements of about
//! 25 KB taking over 20 ms on loopback. Until sqlx sets the option itself, every new pooled
//! connection sets it on this process's TCP connections to the database's port.

/// Sets TCP_NODELAY on every TCP socket of this process connected to `port` that does not have
/// it yet; returns how many it set. Works on file descriptor numbers only (never opening,
/// owning or closing one): a descriptor closed meanwhile just fails the call.
#[cfg(target_os = "linux")]
pub(super) fn to_port(port: u16) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut set = 0;
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::c_int>().ok())
        else {
            continue;
        };
        let socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if socket && peer_port(fd) == Some(port) && !no_delay(fd) && set_no_delay(fd) {
            set += 1;
        }
    }
    set
}

#[cfg(not(target_os = "linux"))]
pub(super) fn to_port(_port: u16) -> usize {
    0
}

/// The peer's TCP port of socket `fd`, if it is a connected IPv4 or IPv6 socket.
#[cfg(target_os = "linux")]
fn peer_port(fd: libc::c_int) -> Option<u16> {
    // SAFETY: getpeername writes at most `len` bytes into the zeroed storage it is given, and
    // only reads the descriptor number.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe { libc::getpeername(fd, (&raw mut addr).cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4: &libc::sockaddr_in = unsafe { &*(&raw const addr).cast() };
            Some(u16::from_be(v4.sin_port))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6: &libc::sockaddr_in6 = unsafe { &*(&raw const addr).cast() };
            Some(u16::from_be(v6.sin6_port))
        }
        _ => None,
    }
}

/// Whether socket `fd` has TCP_NODELAY on (false when it cannot be read).
#[cfg(target_os = "linux")]
pub(super) fn no_delay(fd: libc::c_int) -> bool {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one c_int into `on`, whose size it is given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw mut on).cast(),
            &mut len,
        )
    };
    rc == 0 && on != 0
}

#[cfg(target_os = "linux")]
fn set_no_delay(fd: libc::c_int) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from `on`, whose size it is given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsRawFd;
    use std::str::FromStr;

    /// The TCP sockets of this process connected to `port`, and whether each has TCP_NODELAY.
    fn sockets_to(port: u16) -> Vec<bool> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<libc::c_int>().ok())
            .filter(|fd| super::peer_port(*fd) == Some(port))
            .map(super::no_delay)
            .collect()
    }

    /// The pooled connections to PostgreSQL get the option (when a server is configured).
    #[tokio::test]
    async fn the_store_connections_to_postgres_have_no_delay() {
        for db in crate::store::testing::each_backend().await {
            if db.name != "postgres" {
                continue;
            }
            let port = sqlx::postgres::PgConnectOptions::from_str(&db.url)
                .unwrap()
                .get_port();
            db.store().log_size().await.unwrap();
            // sqlx never sets the option: a socket that has it got it from `to_port`. (Not
            // all of them: another test's connection may be between connect and its hook.)
            let sockets = sockets_to(port);
            assert!(sockets.iter().any(|on| *on), "{sockets:?}");
        }
    }

    /// A plain TCP connection (Nagle on, as sqlx leaves it) to a listener's port gets the option;
    /// one to another port does not.
    #[test]
    fn connections_to_the_port_get_no_delay_and_others_do_not() {
        let db = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to_db = std::net::TcpStream::connect(db.local_addr().unwrap()).unwrap();
        let to_other = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!super::no_delay(to_db.as_raw_fd()));
        assert!(super::to_port(db.local_addr().unwrap().port()) >= 1);
        assert!(super::no_delay(to_db.as_raw_fd()));
        assert!(!super::no_delay(to_other.as_raw_fd()));
    }
}
