//! What the routing component reads on each host in the facts round trip: which interfaces
//! hold the VIP, and haproxy's own view of its backends (its stats socket).

use crate::facts::gather::Probe;
use crate::facts::HostFacts;

pub const VIP: &str = "routing_vip";
pub const HAPROXY: &str = "routing_haproxy";
/// haproxy's admin socket (haproxy.cfg's `stats socket`).
pub const HAPROXY_SOCKET: &str = "/run/haproxy/admin.sock";
/// The write and read routes' names in haproxy.cfg.
pub const PRIMARY_PROXY: &str = "pgha_primary";
pub const REPLICA_PROXY: &str = "pgha_replicas";

/// Every IPv4 address of the host, `interface address/prefix` per line.
pub fn vip_probe() -> Probe {
    Probe {
        name: VIP,
        script: "ip -o -4 addr show 2>/dev/null | awk '{print $2, $4}'".to_owned(),
    }
}

/// The interfaces that hold `address` (no prefix) on this host.
pub fn vip_interfaces(facts: &HostFacts, address: &str) -> Vec<String> {
    facts
        .probe(VIP)
        .unwrap_or_default()
        .iter()
        .filter_map(|line| {
            let (interface, cidr) = line.split_once(' ')?;
            let ip = cidr.split('/').next()?;
            (ip == address).then(|| interface.to_owned())
        })
        .collect()
}

/// haproxy's `show stat` for pgha's two routes: `proxy server status` per line.
pub fn haproxy_probe() -> Probe {
    let python = format!(
        "import socket\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.settimeout(2)\n\
         s.connect({HAPROXY_SOCKET:?})\n\
         s.sendall(b\"show stat\\n\")\n\
         buf = b\"\"\n\
         while True:\n\
         \x20   chunk = s.recv(65536)\n\
         \x20   if not chunk:\n\
         \x20       break\n\
         \x20   buf += chunk\n\
         for line in buf.decode().splitlines():\n\
         \x20   f = line.split(\",\")\n\
         \x20   if len(f) > 17 and f[0] in ({PRIMARY_PROXY:?}, {REPLICA_PROXY:?}) and f[1] not in (\"FRONTEND\", \"BACKEND\"):\n\
         \x20       print(f[0], f[1], f[17])\n"
    );
    Probe {
        name: HAPROXY,
        script: format!(
            "[ -S {HAPROXY_SOCKET} ] && timeout 5 python3 -c {} 2>/dev/null || true",
            shell_words::quote(&python)
        ),
    }
}

/// A backend as haproxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub proxy: String,
    pub server: String,
    /// `UP`, `DOWN`, `UP 1/2`, `MAINT`...
    pub status: String,
}

impl Backend {
    pub fn up(&self) -> bool {
        self.status == "UP" || self.status.starts_with("UP ") || self.status.starts_with("NOLB")
    }
}

/// haproxy's backends on this host; None when haproxy's socket did not answer.
pub fn haproxy_backends(facts: &HostFacts) -> Option<Vec<Backend>> {
    let lines = facts.probe(HAPROXY)?;
    if lines.is_empty() {
        return None;
    }
    Some(
        lines
            .iter()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ' ');
                Some(Backend {
                    proxy: parts.next()?.to_owned(),
                    server: parts.next()?.to_owned(),
                    status: parts.next()?.to_owned(),
                })
            })
            .collect(),
    )
}
