//! The LVM backend's pure parts against captured `lvm` reports: parsing, names and tags,
//! strays, and pool accounting. The LVM operations themselves run in a VM
//! (`backends/tests/lvm_vm.rs`).

use uuid::Uuid;

use super::inventory::{strays, volume_ids};
use super::names::{parse_name, valid_lvm_name, NameKind};
use super::pool::{human, PoolUsage};
use super::report::{parse_lvs, parse_vgs};
use super::{
    base_lv_name, id_tag, incomplete_lv_name, lv_name, read_point_lv_name, StrayKind, VolumeGroup,
    READ_POINT_TAG,
};

/// `lvm lvs --reportformat json --units b --nosuffix -o <LV_FIELDS> dvoltest` as lvm2 2.03.16
/// prints it in the test VM (layout, quoting and the pool and volume rows are captured
/// output; the other rows are edited copies): the pool, a dvol volume, an unfinished one,
/// an orphan, a foreign LV named like dvol's, a foreign thin LV, a second, nearly full pool
/// with its thin LV, a plain LV outside any pool, and the snapshot behind a read point.
const LVS: &str = r#"  {
      "report": [
          {
              "lv": [
                  {"lv_name":"other", "vg_name":"dvoltest", "lv_attr":"twi-aotz--", "lv_size":"33554432", "data_percent":"96.88", "metadata_percent":"11.43", "pool_lv":"", "lv_tags":""},
                  {"lv_name":"pool", "vg_name":"dvoltest", "lv_attr":"twi-aotz--", "lv_size":"536870912", "data_percent":"12.50", "metadata_percent":"10.94", "pool_lv":"", "lv_tags":""},
                  {"lv_name":"dvol-67e5504410b1426f9247bb680e5fe0c8", "vg_name":"dvoltest", "lv_attr":"Vwi-aotz--", "lv_size":"67108864", "data_percent":"7.42", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_67e5504410b1426f9247bb680e5fe0c8"},
                  {"lv_name":"dvol-0f1e2d3c4b5a69788796a5b4c3d2e1f0-new", "vg_name":"dvoltest", "lv_attr":"Vwi-a-tz--", "lv_size":"104857600", "data_percent":"0.00", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_0f1e2d3c4b5a69788796a5b4c3d2e1f0"},
                  {"lv_name":"dvol-11111111222233334444555555555555", "vg_name":"dvoltest", "lv_attr":"Vwi---tz--", "lv_size":"209715200", "data_percent":"", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_11111111222233334444555555555555"},
                  {"lv_name":"dvol-22222222222233334444555555555555", "vg_name":"dvoltest", "lv_attr":"Vwi-a-tz--", "lv_size":"4194304", "data_percent":"0.00", "metadata_percent":"", "pool_lv":"pool", "lv_tags":""},
                  {"lv_name":"scratch", "vg_name":"dvoltest", "lv_attr":"Vwi-a-tz--", "lv_size":"134217728", "data_percent":"3.10", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"backup"},
                  {"lv_name":"filler", "vg_name":"dvoltest", "lv_attr":"Vwi-a-tz--", "lv_size":"33554432", "data_percent":"96.88", "metadata_percent":"", "pool_lv":"other", "lv_tags":""},
                  {"lv_name":"plain", "vg_name":"dvoltest", "lv_attr":"-wi-a-----", "lv_size":"8388608", "data_percent":"", "metadata_percent":"", "pool_lv":"", "lv_tags":"dvol"},
                  {"lv_name":"dvol-67e5504410b1426f9247bb680e5fe0c8-rp", "vg_name":"dvoltest", "lv_attr":"Vwi-aotz--", "lv_size":"67108864", "data_percent":"7.42", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_67e5504410b1426f9247bb680e5fe0c8,dvol_read_point"}
              ]
          }
      ]
  }
"#;

/// `lvm vgs --reportformat json --units b --nosuffix -o <VG_FIELDS>`, captured in the VM.
const VGS: &str = r#"  {
      "report": [
          {
              "vg": [
                  {"vg_name":"dvoltest", "vg_size":"1069547520", "vg_free":"524288000"}
              ]
          }
      ]
  }
"#;

/// What `lvm lvs` prints for a volume group with no LVs.
const LVS_EMPTY: &str = r#"{"report": [{"lv": []}]}"#;

/// The `json_std` flavour: numbers as numbers, missing values as null.
const LVS_STD: &str = r#"{"report": [{"lv": [
        {"lv_name":"pool", "vg_name":"vg", "lv_attr":"twi-aotz--", "lv_size":1073741824, "data_percent":50.5, "metadata_percent":1.5, "pool_lv":"", "lv_tags":[]},
        {"lv_name":"x", "vg_name":"vg", "lv_attr":"Vwi-aotz--", "lv_size":4194304, "data_percent":null, "metadata_percent":null, "pool_lv":"pool", "lv_tags":["a","b"]}
    ]}]}"#;

const MIB: u64 = 1 << 20;

fn id(hex: &str) -> Uuid {
    Uuid::parse_str(hex).unwrap()
}

#[test]
fn parses_lvs_json_reports_into_typed_rows() {
    let lvs = parse_lvs(LVS).unwrap();
    assert_eq!(lvs.len(), 10);
    let pool = &lvs[1];
    assert_eq!(pool.lv_name, "pool");
    assert_eq!(pool.vg_name, "dvoltest");
    assert!(pool.is_thin_pool());
    assert!(pool.is_active());
    assert_eq!(pool.lv_size, 512 * MIB);
    assert_eq!(pool.data_percent, Some(12.5));
    assert_eq!(pool.metadata_percent, Some(10.94));
    let volume = &lvs[2];
    assert!(!volume.is_thin_pool());
    assert_eq!(volume.pool_lv, "pool");
    assert_eq!(volume.metadata_percent, None);
    assert_eq!(
        volume.lv_tags,
        vec!["dvol", "dvol_67e5504410b1426f9247bb680e5fe0c8"]
    );
    assert!(!lvs[4].is_active());
    assert_eq!(lvs[4].data_percent, None);
    assert!(lvs[5].lv_tags.is_empty());
    assert!(parse_lvs(LVS_EMPTY).unwrap().is_empty());
}

#[test]
fn parses_json_std_reports_too() {
    let lvs = parse_lvs(LVS_STD).unwrap();
    assert_eq!(lvs[0].lv_size, 1 << 30);
    assert_eq!(lvs[0].data_percent, Some(50.5));
    assert_eq!(lvs[1].data_percent, None);
    assert_eq!(lvs[1].lv_tags, vec!["a", "b"]);
}

#[test]
fn parses_vgs_json_reports() {
    let vgs = parse_vgs(VGS).unwrap();
    assert_eq!(
        vgs,
        vec![VolumeGroup {
            vg_name: "dvoltest".into(),
            vg_size: 1020 * MIB,
            vg_free: 500 * MIB,
        }]
    );
}

#[test]
fn garbage_reports_are_errors_not_empty_lists() {
    assert!(parse_lvs("  LV   VG   Attr\n  pool dvoltest twi-aotz--").is_err());
    assert!(parse_lvs(r#"{"report": [{"lv": [{"lv_name":"x"}]}]}"#).is_err());
    assert!(parse_lvs(
        r#"{"report": [{"lv": [{"lv_name":"x", "vg_name":"v", "lv_attr":"", "lv_size":"12k"}]}]}"#
    )
    .is_err());
    assert!(parse_vgs("{}").is_err());
}

#[test]
fn names_and_tags_round_trip() {
    let volume = id("67e55044-10b1-426f-9247-bb680e5fe0c8");
    assert_eq!(lv_name(volume), "dvol-67e5504410b1426f9247bb680e5fe0c8");
    assert_eq!(
        incomplete_lv_name(volume),
        "dvol-67e5504410b1426f9247bb680e5fe0c8-new"
    );
    assert_eq!(id_tag(volume), "dvol_67e5504410b1426f9247bb680e5fe0c8");
    assert_eq!(
        parse_name(&lv_name(volume)),
        Some(NameKind::Complete(volume))
    );
    assert_eq!(
        parse_name(&incomplete_lv_name(volume)),
        Some(NameKind::Incomplete(volume))
    );
    assert_eq!(
        read_point_lv_name(volume),
        "dvol-67e5504410b1426f9247bb680e5fe0c8-rp"
    );
    assert_eq!(
        parse_name(&read_point_lv_name(volume)),
        Some(NameKind::ReadPoint(volume))
    );
    assert!(valid_lvm_name(&read_point_lv_name(volume)));
    for other in [
        "dvol-67e5504410b1426f9247bb680e5fe0c8-rp-new",
        "pool",
        "dvol-",
        "dvol-67e55044-10b1-426f-9247-bb680e5fe0c8",
        "dvol-67E5504410B1426F9247BB680E5FE0C8",
        "dvol-67e5504410b1426f9247bb680e5fe0c8-old",
        "xdvol-67e5504410b1426f9247bb680e5fe0c8",
    ] {
        assert_eq!(parse_name(other), None, "{other}");
    }
    // LV names stay well inside LVM's limit of 127 characters.
    assert!(incomplete_lv_name(volume).len() < 64);
    assert!(valid_lvm_name(&incomplete_lv_name(volume)));
}

#[test]
fn checks_vg_and_pool_names_before_they_reach_a_command_line() {
    for good in ["dvol", "vg0", "gold_pool", "a.b-c+d"] {
        assert!(valid_lvm_name(good), "{good}");
    }
    for bad in ["", "-y", "..", ".", "a/b", "a b", "vg;rm", &"x".repeat(128)] {
        assert!(!valid_lvm_name(bad), "{bad}");
    }
}

#[test]
fn lists_only_finished_dvol_volumes_of_this_pool() {
    let lvs = parse_lvs(LVS).unwrap();
    assert_eq!(
        volume_ids(&lvs, "pool"),
        vec![
            id("11111111222233334444555555555555"),
            id("67e5504410b1426f9247bb680e5fe0c8"),
        ]
    );
    assert!(volume_ids(&lvs, "other").is_empty());
}

#[test]
fn a_read_point_needs_all_three_tags_to_be_dvols() {
    let lvs = parse_lvs(LVS).unwrap();
    let mut snapshot = lvs.last().unwrap().clone();
    let volume = id("67e5504410b1426f9247bb680e5fe0c8");
    assert_eq!(snapshot.dvol_name(), Some(NameKind::ReadPoint(volume)));
    snapshot.lv_tags.retain(|t| t != READ_POINT_TAG);
    assert_eq!(snapshot.dvol_name(), None);
    let found = strays(&[snapshot], "dvoltest", "pool", &[volume]);
    assert_eq!(found[0].kind, StrayKind::Foreign);
}

#[test]
fn reports_foreign_orphan_and_unfinished_lvs_of_this_pool() {
    let lvs = parse_lvs(LVS).unwrap();
    let known = [id("67e5504410b1426f9247bb680e5fe0c8")];
    let found = strays(&lvs, "dvoltest", "pool", &known);
    let kinds: Vec<_> = found.iter().map(|s| (s.name.as_str(), s.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (
                "dvoltest/dvol-0f1e2d3c4b5a69788796a5b4c3d2e1f0-new",
                StrayKind::Incomplete(id("0f1e2d3c4b5a69788796a5b4c3d2e1f0"))
            ),
            (
                "dvoltest/dvol-11111111222233334444555555555555",
                StrayKind::Orphan(id("11111111222233334444555555555555"))
            ),
            // Named like dvol's but without its tags: not dvol's.
            (
                "dvoltest/dvol-22222222222233334444555555555555",
                StrayKind::Foreign
            ),
            ("dvoltest/scratch", StrayKind::Foreign),
            // A read point's snapshot is reported as what it is, also for a known volume.
            (
                "dvoltest/dvol-67e5504410b1426f9247bb680e5fe0c8-rp",
                StrayKind::ReadPoint(id("67e5504410b1426f9247bb680e5fe0c8"))
            ),
        ]
    );
    assert!(
        found[4].to_string().contains("read point")
            && found[4].to_string().contains("not a volume"),
        "{}",
        found[4]
    );
    assert!(
        found[3].to_string().contains("not made by dvol"),
        "{}",
        found[3]
    );
    assert!(found[1].to_string().contains("not known"), "{}", found[1]);
}

/// A pool with a volume, its base (a kept read point, with the read point's tags), the base
/// of a volume not known, and one named like a base without the read point tag; with the
/// `thin_id` field `lvs` prints for thin LVs.
const LVS_WITH_BASES: &str = r#"{"report": [{"lv": [
        {"lv_name":"pool", "vg_name":"vg", "lv_attr":"twi-aotz--", "lv_size":"536870912", "data_percent":"10.00", "metadata_percent":"2.00", "pool_lv":"", "lv_tags":"", "thin_id":""},
        {"lv_name":"dvol-67e5504410b1426f9247bb680e5fe0c8", "vg_name":"vg", "lv_attr":"Vwi-aotz--", "lv_size":"67108864", "data_percent":"7.42", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_67e5504410b1426f9247bb680e5fe0c8", "thin_id":"1"},
        {"lv_name":"dvol-67e5504410b1426f9247bb680e5fe0c8-base", "vg_name":"vg", "lv_attr":"Vwi-a-tz-k", "lv_size":"67108864", "data_percent":"7.40", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_67e5504410b1426f9247bb680e5fe0c8,dvol_read_point", "thin_id":"4"},
        {"lv_name":"dvol-33333333222233334444555555555555-base", "vg_name":"vg", "lv_attr":"Vwi-a-tz-k", "lv_size":"8388608", "data_percent":"1.00", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_33333333222233334444555555555555,dvol_read_point", "thin_id":"7"},
        {"lv_name":"dvol-44444444222233334444555555555555-base", "vg_name":"vg", "lv_attr":"Vwi-a-tz-k", "lv_size":"8388608", "data_percent":"1.00", "metadata_percent":"", "pool_lv":"pool", "lv_tags":"dvol,dvol_44444444222233334444555555555555", "thin_id":"8"}
    ]}]}"#;

#[test]
fn a_base_belongs_to_its_volume_and_is_neither_a_volume_nor_provisioned() {
    let volume = id("67e5504410b1426f9247bb680e5fe0c8");
    assert_eq!(
        base_lv_name(volume),
        "dvol-67e5504410b1426f9247bb680e5fe0c8-base"
    );
    assert_eq!(
        parse_name(&base_lv_name(volume)),
        Some(NameKind::Base(volume))
    );
    assert!(valid_lvm_name(&base_lv_name(volume)));
    let lvs = parse_lvs(LVS_WITH_BASES).unwrap();
    assert_eq!(lvs[0].thin_id, None);
    assert_eq!(lvs[1].thin_id, Some(1));
    assert_eq!(lvs[2].thin_id, Some(4));
    assert_eq!(lvs[2].dvol_name(), Some(NameKind::Base(volume)));
    // Without the read point tag it was never a read point of dvol's.
    assert_eq!(lvs[4].dvol_name(), None);
    assert_eq!(volume_ids(&lvs, "pool"), vec![volume]);
    let found = strays(&lvs, "vg", "pool", &[volume]);
    let kinds: Vec<_> = found.iter().map(|s| (s.name.as_str(), s.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (
                "vg/dvol-33333333222233334444555555555555-base",
                StrayKind::Orphan(id("33333333222233334444555555555555"))
            ),
            (
                "vg/dvol-44444444222233334444555555555555-base",
                StrayKind::Foreign
            ),
        ]
    );
    // A base shares its origin's blocks: only the volume and the foreign LV are provisioned.
    let usage = PoolUsage::from_report(&lvs, "vg", "pool", &[]).unwrap();
    assert_eq!(usage.provisioned, (64 + 8) * MIB);
}

#[test]
fn pool_usage_sums_virtual_sizes_of_the_pools_thin_lvs() {
    let lvs = parse_lvs(LVS).unwrap();
    let usage = PoolUsage::from_report(&lvs, "dvoltest", "pool", &[]).unwrap();
    assert_eq!(usage.location, "dvoltest/pool");
    assert_eq!(usage.size, 512 * MIB);
    // The read point's snapshot (64 MiB virtual) shares its origin's blocks: not counted.
    assert_eq!(usage.provisioned, (64 + 100 + 200 + 4 + 128) * MIB);
    assert_eq!(usage.free(), 448 * MIB);
    let excluding =
        PoolUsage::from_report(&lvs, "dvoltest", "pool", &["scratch".to_string()]).unwrap();
    assert_eq!(excluding.provisioned, (64 + 100 + 200 + 4) * MIB);
    // Not a thin pool, or not there at all.
    assert!(PoolUsage::from_report(&lvs, "dvoltest", "plain", &[]).is_none());
    assert!(PoolUsage::from_report(&lvs, "dvoltest", "missing", &[]).is_none());
}

fn usage(size: u64, provisioned: u64, data: f64, metadata: f64) -> PoolUsage {
    PoolUsage {
        location: "vg/pool".into(),
        size,
        data_percent: data,
        metadata_percent: metadata,
        provisioned,
    }
}

#[test]
fn overprovision_limit_is_pool_size_times_ratio() {
    let pool = usage(1024 * MIB, 1536 * MIB, 10.0, 5.0);
    // 1.5 GiB + 512 MiB = 2 GiB = exactly 2x: allowed.
    pool.check_room(512 * MIB, 2.0).unwrap();
    let err = pool.check_room(513 * MIB, 2.0).unwrap_err();
    for part in [
        "vg/pool",
        "1.5GiB already provisioned",
        "513MiB requested",
        "2x",
        "pool size of 1GiB",
        "2GiB allowed",
    ] {
        assert!(err.contains(part), "{part:?} missing in: {err}");
    }
    // Ratio 1.0: no overprovisioning at all.
    usage(1024 * MIB, 0, 0.0, 0.0)
        .check_room(1024 * MIB, 1.0)
        .unwrap();
    assert!(usage(1024 * MIB, 0, 0.0, 0.0)
        .check_room(1025 * MIB, 1.0)
        .is_err());
    // Fractional ratios.
    usage(1000 * MIB, 0, 0.0, 0.0)
        .check_room(2500 * MIB, 2.5)
        .unwrap();
    assert!(usage(1000 * MIB, 1, 0.0, 0.0)
        .check_room(2500 * MIB, 2.5)
        .is_err());
}

#[test]
fn refuses_new_volumes_when_data_or_metadata_is_nearly_full() {
    let err = usage(1024 * MIB, 0, 95.1, 1.0)
        .check_room(MIB, 10.0)
        .unwrap_err();
    assert!(err.contains("95.1% full (data)"), "{err}");
    let err = usage(1024 * MIB, 0, 1.0, 99.0)
        .check_room(MIB, 10.0)
        .unwrap_err();
    assert!(err.contains("99.0% full (metadata)"), "{err}");
    usage(1024 * MIB, 0, 95.0, 95.0)
        .check_room(MIB, 10.0)
        .unwrap();
    let lvs = parse_lvs(LVS).unwrap();
    let other = PoolUsage::from_report(&lvs, "dvoltest", "other", &[]).unwrap();
    assert!(other
        .check_room(MIB, 10.0)
        .unwrap_err()
        .contains("dvoltest/other is 96.9% full"));
}

#[test]
fn free_space_follows_data_usage() {
    assert_eq!(usage(1000, 0, 0.0, 0.0).free(), 1000);
    assert_eq!(usage(1000, 0, 25.0, 0.0).free(), 750);
    assert_eq!(usage(1000, 0, 100.0, 0.0).free(), 0);
    assert_eq!(usage(1000, 0, 120.0, 0.0).free(), 0);
}

#[test]
fn messages_use_binary_units() {
    assert_eq!(human(512 * MIB), "512MiB");
    assert_eq!(human(0), "0B");
    assert_eq!(human(3 << 29), "1.5GiB");
}
