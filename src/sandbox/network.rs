//! One Docker network and /24 per sandbox, so several sandboxes (parallel tests) live side by
//! side with fixed, predictable addresses (.11 for pg1, .12 for pg2...).

use std::net::Ipv4Addr;

use super::cmd::{self, docker};
use super::{note, SandboxError, LABEL};

/// The sandbox network as created or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Net {
    pub(crate) name: String,
    /// Network address of the /24 (a.b.c.0).
    pub(crate) base: Ipv4Addr,
}

impl Net {
    /// Address of host `k` (1-based): .11, .12, ...
    pub(crate) fn host_ip(&self, k: usize) -> Ipv4Addr {
        let [a, b, c, _] = self.base.octets();
        // k <= 9 is checked by `up`.
        Ipv4Addr::new(a, b, c, 10 + k as u8)
    }
}

pub(crate) fn network_name(sandbox: &str) -> String {
    format!("{sandbox}-net")
}

/// `--subnet`: an IPv4 /24 written as its network address.
pub(crate) fn parse_subnet(s: &str) -> Result<Ipv4Addr, SandboxError> {
    let bad = |m: &str| SandboxError::Invalid {
        what: "--subnet",
        message: format!("{s:?}: {m}"),
    };
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| bad("expected an IPv4 /24 such as 10.77.5.0/24"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
    if prefix != "24" {
        return Err(bad("a sandbox network is a /24 (hosts are .11 to .19)"));
    }
    if addr.octets()[3] != 0 {
        return Err(bad("the last byte of a /24 network address is 0"));
    }
    Ok(addr)
}

/// The sandbox's network, if it exists (found by label).
pub(crate) fn existing(sandbox: &str) -> Result<Option<Net>, SandboxError> {
    let mut ls = docker();
    ls.args([
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label={LABEL}={sandbox}"),
    ]);
    let ids = cmd::run(&mut ls)?;
    let Some(id) = ids.split_whitespace().next() else {
        return Ok(None);
    };
    let mut inspect = docker();
    inspect.args([
        "network",
        "inspect",
        "--format",
        "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{end}}",
        id,
    ]);
    let out = cmd::run(&mut inspect)?;
    let mut words = out.split_whitespace();
    let name = words.next().unwrap_or_default().to_string();
    let base = words
        .filter_map(parse_cidr)
        .find(|(_, p)| *p == 24)
        .map(|(a, _)| a);
    Ok(base.map(|base| Net { name, base }))
}

/// Find or create the sandbox network; a new one gets `requested` or a free 10.77.N.0/24.
pub(crate) fn ensure_network(
    sandbox: &str,
    requested: Option<Ipv4Addr>,
) -> Result<Net, SandboxError> {
    let name = network_name(sandbox);
    if let Some(net) = existing(sandbox)? {
        if requested.is_some_and(|r| r != net.base) {
            return Err(SandboxError::Conflict(format!(
                "sandbox {sandbox} already uses {}/24; run `pgha sandbox down --name {sandbox}` to change its subnet",
                net.base
            )));
        }
        return Ok(net);
    }
    // A network of that name without our label is not ours to reuse or remove.
    if cmd::succeeds(docker().args(["network", "inspect", &name])) {
        return Err(SandboxError::Conflict(format!(
            "a Docker network named {name} exists but does not belong to sandbox {sandbox} \
             (no label {LABEL}={sandbox}); remove it or choose another --name"
        )));
    }
    // Parallel runs may pick the same free /24: Docker refuses the overlap and we pick again.
    let mut last_err = None;
    for _ in 0..8 {
        let base = match requested {
            Some(r) => r,
            None => pick_free(sandbox, &used_subnets()?)?,
        };
        let mut create = docker();
        create.args(create_args(sandbox, &name, base));
        match cmd::run(&mut create) {
            Ok(_) => return Ok(Net { name, base }),
            Err(SandboxError::Command { stderr, .. })
                if requested.is_none() && stderr.to_lowercase().contains("overlap") =>
            {
                note(format!("{base}/24 was taken meanwhile; trying another"));
                last_err = Some(stderr);
            }
            Err(e) => return Err(e),
        }
    }
    Err(SandboxError::Conflict(format!(
        "could not create network {name}: {}",
        last_err.unwrap_or_default()
    )))
}

/// `docker network create` for a new sandbox network. Docker hands out addresses only from the
/// lower half (--ip-range BASE/25), so .128 to .254 stay free for addresses the hosts take
/// over themselves (the inventory's routing VIP, .200). Existing networks are kept as they
/// are: containers get fixed addresses (.11...) either way.
fn create_args(sandbox: &str, name: &str, base: Ipv4Addr) -> Vec<String> {
    [
        "network",
        "create",
        "--driver",
        "bridge",
        "--subnet",
        &format!("{base}/24"),
        "--ip-range",
        &format!("{base}/25"),
        "--label",
        &format!("{LABEL}={sandbox}"),
        name,
    ]
    .map(String::from)
    .to_vec()
}

/// Remove every network labelled for the sandbox.
pub(crate) fn remove_all(sandbox: &str) -> Result<(), SandboxError> {
    let mut ls = docker();
    ls.args([
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label={LABEL}={sandbox}"),
    ]);
    let ids = cmd::run(&mut ls)?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        note(format!("removing network(s) of sandbox {sandbox}"));
        cmd::run(docker().args(["network", "rm"]).args(&ids))?;
    }
    Ok(())
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    Some((a.parse().ok()?, p.parse().ok().filter(|p| *p <= 32)?))
}

/// IPv4 subnets already in use: every Docker network's and every route of this machine.
fn used_subnets() -> Result<Vec<(Ipv4Addr, u8)>, SandboxError> {
    let mut used = Vec::new();
    // A network removed between `ls` and `inspect` (another sandbox going down) makes
    // inspect fail: list again and retry.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ids = cmd::run(docker().args(["network", "ls", "-q"]))?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            break;
        }
        let mut inspect = docker();
        inspect
            .args([
                "network",
                "inspect",
                "--format",
                "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            ])
            .args(&ids);
        match cmd::run(&mut inspect) {
            Ok(out) => {
                used.extend(out.split_whitespace().filter_map(parse_cidr));
                break;
            }
            Err(e) if attempt >= 5 => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
    used.extend(parse_routes(
        &std::fs::read_to_string("/proc/net/route").unwrap_or_default(),
    ));
    Ok(used)
}

/// Destinations of /proc/net/route (hex in host byte order), without the default route.
fn parse_routes(text: &str) -> Vec<(Ipv4Addr, u8)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            let prefix = mask.count_ones() as u8;
            (prefix > 0).then(|| (Ipv4Addr::from(dest.to_ne_bytes()), prefix))
        })
        .collect()
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let p = a.1.min(b.1);
    let mask = if p == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(p))
    };
    (u32::from(a.0) & mask) == (u32::from(b.0) & mask)
}

/// A free 10.77.N.0/24, starting from a hash of the name so that different sandboxes tend to
/// get different subnets even before looking.
fn pick_free(sandbox: &str, used: &[(Ipv4Addr, u8)]) -> Result<Ipv4Addr, SandboxError> {
    let start = sandbox.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (0..256u32)
        .map(|i| Ipv4Addr::new(10, 77, ((start + i) % 256) as u8, 0))
        .find(|c| !used.iter().any(|u| overlaps((*c, 24), *u)))
        .ok_or(SandboxError::NoFreeSubnet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        assert_eq!(
            parse_subnet("10.9.8.0/24").expect("ok"),
            Ipv4Addr::new(10, 9, 8, 0)
        );
        assert!(parse_subnet("10.9.8.0/16").is_err());
        assert!(parse_subnet("10.9.8.1/24").is_err());
        assert!(parse_subnet("10.9.8.0").is_err());
        assert!(parse_subnet("x/24").is_err());
        let net = Net {
            name: "n".into(),
            base: Ipv4Addr::new(10, 77, 3, 0),
        };
        assert_eq!(net.host_ip(1), Ipv4Addr::new(10, 77, 3, 11));
        assert_eq!(net.host_ip(9), Ipv4Addr::new(10, 77, 3, 19));
    }

    #[test]
    fn new_networks_keep_the_upper_half_free() {
        let args = create_args("s1", "s1-net", Ipv4Addr::new(10, 77, 3, 0)).join(" ");
        assert_eq!(
            args,
            "network create --driver bridge --subnet 10.77.3.0/24 --ip-range 10.77.3.0/25 \
             --label pgha.sandbox=s1 s1-net"
        );
    }

    #[test]
    fn picks_free_and_distinct() {
        let a = pick_free("alpha", &[]).expect("free");
        let b = pick_free("beta", &[]).expect("free");
        assert_ne!(a, b);
        let next = pick_free("alpha", &[(a, 24)]).expect("free");
        assert_ne!(next, a);
        assert!(pick_free("x", &[(Ipv4Addr::new(10, 0, 0, 0), 8)]).is_err());
        assert!(overlaps(
            (Ipv4Addr::new(10, 77, 3, 0), 24),
            (Ipv4Addr::new(10, 77, 0, 0), 16)
        ));
        assert!(!overlaps(
            (Ipv4Addr::new(10, 77, 3, 0), 24),
            (Ipv4Addr::new(10, 77, 4, 0), 24)
        ));
    }

    #[test]
    fn reads_routes() {
        let text =
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let r = parse_routes(text);
        if cfg!(target_endian = "little") {
            assert_eq!(r, vec![(Ipv4Addr::new(192, 168, 2, 0), 24)]);
        }
    }
}
