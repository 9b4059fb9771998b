//! `ips detach --iface IF`: through the daemon if it runs, else straight on the pins.
use ips::{api::DetachRequest, enforcer::loader};

use crate::{Ctx, Format};

/// `ips detach` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Interface to detach from.
    #[arg(short, long = "iface", required = true)]
    iface: String,
}

pub fn exec(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let detached = match ctx.client().post::<_, serde_json::Value>(
        "/v1/ips/detach",
        &DetachRequest {
            iface: args.iface.clone(),
        },
    ) {
        Ok(v) => v["detached"] == true,
        Err(e) if e.is_not_running() => loader::detach(&ctx.config.enforcer.pin_dir, &args.iface)?,
        Err(e) => return Err(e.into()),
    };
    match ctx.format {
        Format::Json => println!("{}", serde_json::json!({ "detached": detached })),
        Format::Table if detached => println!("detached from {}", args.iface),
        Format::Table => println!("nothing was attached to {}", args.iface),
    }
    Ok(())
}
