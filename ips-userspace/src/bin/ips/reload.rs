//! `ips reload`: the running daemon reads its config again (as on SIGHUP).
use ips::reload::ReloadReport;

use crate::{Ctx, Format};

pub fn exec(ctx: &Ctx) -> anyhow::Result<()> {
    let r: ReloadReport = ctx
        .client()
        .post("/v1/ips/reload", &serde_json::json!({}))?;
    if ctx.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    if r.applied.is_empty() && r.need_restart.is_empty() {
        println!("reloaded {}: nothing changed", ctx.config_path.display());
    } else {
        println!("reloaded {}", ctx.config_path.display());
    }
    if !r.applied.is_empty() {
        println!("  applied: {}", r.applied.join(", "));
    }
    if r.buckets_kept > 0 {
        println!("  detection buckets kept: {}", r.buckets_kept);
    }
    if !r.need_restart.is_empty() {
        println!(
            "  changed but read only at start (restart ips to apply): {}",
            r.need_restart.join(", ")
        );
    }
    Ok(())
}
