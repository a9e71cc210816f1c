//! A saved plan is applied exactly or refused: what it was made from (inventory, playbook,
//! templates, secrets) is pinned in the plan file and checked before any host is contacted.
//! The one host is a closed port on loopback: a refusal that came after connecting would say
//! so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pgha::model::Topology;
use pgha::plan::build::Plan;
use pgha::plan::inputs::Inputs;
use pgha::project::Project;

use crate::support::Test;

const INVENTORY: &str = "cluster: {name: saved, flavour: streaming}
postgres:
  version: 15
  parameters: {work_mem: 8MB}
replication: {user: replicator, password: {file: repl.txt}}
ssh: {port: 1, connect_timeout: 1, host_key_policy: accept-new}
hosts:
  - {name: pg1, address: 127.0.0.1, role: primary}
";

struct Saved {
    dir: tempfile::TempDir,
}

impl Saved {
    /// An inventory, its secret, and a plan file made from them.
    fn new() -> Saved {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("inventory.yml"), INVENTORY).expect("inventory");
        std::fs::write(dir.path().join("repl.txt"), "first-repl-secret\n").expect("secret");
        std::fs::create_dir(dir.path().join("templates")).expect("templates");
        let saved = Saved { dir };
        let project =
            Project::load(&saved.inventory(), None, Some(&saved.templates())).expect("loads");
        let secrets = project.resolve_secrets().expect("secrets");
        let plan = Plan {
            format_version: 1,
            id: "0a1b2c3d4e5f".into(),
            cluster: "saved".into(),
            inventory: saved.inventory(),
            topology: Topology::declared(&project.cluster),
            member_roles: BTreeMap::new(),
            notes: Vec::new(),
            warnings: Vec::new(),
            unreachable: BTreeMap::new(),
            hosts: BTreeMap::new(),
            digests: BTreeMap::new(),
            inputs: Some(Inputs::of(&project, &secrets, "planned-salt")),
            leaving: BTreeMap::new(),
            upgrade: None,
        };
        let json = serde_json::to_string(&plan).expect("json");
        assert!(
            !json.contains("first-repl-secret"),
            "the plan holds no secret"
        );
        std::fs::write(saved.plan(), json).expect("plan");
        saved
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn inventory(&self) -> PathBuf {
        self.path("inventory.yml")
    }

    fn templates(&self) -> PathBuf {
        self.path("templates")
    }

    fn plan(&self) -> PathBuf {
        self.path("plan.json")
    }

    fn apply(&self) -> Test {
        Test::new()
            .args(["apply", "--templates"])
            .arg_path(&self.templates())
            .args(["-i"])
            .arg_path(&self.inventory())
            .arg_path(&self.plan())
            .status(1)
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).expect("write");
}

#[test]
fn an_unchanged_input_goes_on_to_the_hosts() {
    let s = Saved::new();
    // Nothing changed: apply goes on and meets the (absent) host.
    let ran = s.apply().stderr_has("not reached: pg1").run();
    assert!(!ran.stderr.contains("other input"), "{}", ran.stderr);
}

#[test]
fn an_edited_inventory_refuses_the_saved_plan_before_any_host_is_contacted() {
    let s = Saved::new();
    edit(&s.inventory(), "work_mem: 8MB", "work_mem: 64MB");
    let ran = s
        .apply()
        .stderr_has(
            "the saved plan 0a1b2c3d4e5f was made from other input: the inventory changed since",
        )
        .stderr_has("Nothing was applied")
        .run();
    assert!(!ran.stderr.contains("unreachable"), "{}", ran.stderr);
}

#[test]
fn a_changed_secret_or_template_is_named() {
    let s = Saved::new();
    std::fs::write(s.path("repl.txt"), "second-repl-secret\n").expect("secret");
    std::fs::create_dir_all(s.templates().join("postgresql")).expect("folder");
    std::fs::write(
        s.templates().join("postgresql/pg_hba.conf.j2"),
        "local all all peer\n",
    )
    .expect("template");
    let ran = s
        .apply()
        .stderr_has("template postgresql/pg_hba.conf.j2; secret replication.password")
        .run();
    assert!(
        !ran.stderr.contains("second-repl-secret") && !ran.stderr.contains("first-repl-secret"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_plan_that_does_not_pin_its_inputs_is_refused() {
    let s = Saved::new();
    let text = std::fs::read_to_string(s.plan()).expect("plan");
    let mut plan: serde_json::Value = serde_json::from_str(&text).expect("json");
    plan.as_object_mut().expect("object").remove("inputs");
    std::fs::write(s.plan(), plan.to_string()).expect("write");
    s.apply()
        .stderr_has("does not record what it was made from")
        .run();
}
