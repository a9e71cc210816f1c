//! How long the client route takes to follow a new primary: what each way of routing adds
//! after the promotion (haproxy's timing is `timing::haproxy_checks`, which its template
//! renders too).

use std::sync::Arc;
use std::time::Duration;

use crate::components::routing::{Routing, VipMode};
use crate::components::timing::haproxy_checks;
use crate::components::Component;
use crate::flavours::RouteDelay;
use crate::model::Cluster;

/// keepalived's check runs every advert interval (1 s); a member whose check starts to pass
/// leaves FAULT as BACKUP and takes the VIP after VRRP's master-down interval (three adverts
/// and a skew under one): about 5 s after the promotion.
const KEEPALIVED: Duration = Duration::from_secs(5);
/// The flavour's role callback adds the VIP and sends gratuitous ARP as it promotes.
const CALLBACK: Duration = Duration::from_secs(1);

/// What the route adds after the promotion: the slowest of the ways the inventory routes
/// clients (a VIP, haproxy), or nothing without a `routing:` section.
pub fn route_delay(components: &[Arc<dyn Component>], cluster: &Cluster) -> RouteDelay {
    let Some(routing) = components
        .iter()
        .find_map(|c| c.as_any().downcast_ref::<Routing>())
    else {
        return RouteDelay::default();
    };
    let mut ways: Vec<(Duration, String)> = Vec::new();
    if let Some(v) = &routing.section.vip {
        ways.push(match v.mode {
            VipMode::Callback => (
                CALLBACK,
                "the VIP moves with the flavour's role callback".to_owned(),
            ),
            VipMode::Keepalived => (
                KEEPALIVED,
                "keepalived checks every 1 s, VRRP moves the VIP after 3 adverts".to_owned(),
            ),
        });
    }
    if routing.section.haproxy.is_some() {
        let h = haproxy_checks(cluster.objectives.as_ref());
        // A member leaves the write route after `fall` failed checks: the bound for a
        // demoted primary that still answers; a new one enters after `rise` (fewer).
        let worst = Duration::from_millis(h.inter_ms * h.fall.max(h.rise));
        let every = if h.inter_ms % 1000 == 0 {
            format!("{} s", h.inter_ms / 1000)
        } else {
            format!("{} s", h.inter_ms as f64 / 1000.0)
        };
        ways.push((
            worst,
            format!("haproxy checks every {every}, out after {}", h.fall),
        ));
    }
    ways.into_iter()
        .max_by_key(|(d, _)| *d)
        .map(|(worst, how)| RouteDelay { worst, how })
        .unwrap_or_default()
}
