//! berthd's systemd client: container scopes started, updated and stopped over D-Bus
//! (`org.freedesktop.systemd1.Manager`), as runc's systemd driver does through go-systemd.
//!
//! It talks to systemd over the system bus, as runc does. Not systemd's private socket
//! (`/run/systemd/private`): systemd stamps its messages there with the sender
//! `org.freedesktop.systemd1`, a well-known name where D-Bus allows only a unique one, and zbus
//! refuses such replies ("Invalid unique name"). The connection is made on first use and
//! made again after it breaks (a `systemctl daemon-reexec` closes it). A job is waited for by
//! polling its object until systemd drops it, then the unit's `ActiveState` tells how it went:
//! no signal subscription to miss.

use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use tokio::sync::Mutex;
use zbus::{Connection, DBusError, OwnedObjectPath, OwnedVariant, Variant};

use super::{Property, SystemdPath, resource_properties, scope_properties};
use crate::error::{Error, Result};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// One D-Bus call; systemd answers in milliseconds unless it is stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A scope's start or stop job.
const JOB_TIMEOUT: Duration = Duration::from_secs(10);

/// A lazily connected client of the systemd manager.
#[derive(Default)]
pub struct Systemd {
    conn: Mutex<Option<Connection>>,
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Systemd(format!("{what}: {e}"))
}

/// The D-Bus error name of a method error reply.
fn error_name(e: &zbus::Error) -> Option<String> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.to_string()),
        zbus::Error::FDO(f) => Some(f.name().to_string()),
        _ => None,
    }
}

fn variant(p: &Property) -> Variant<'_> {
    match p {
        Property::Bool(b) => Variant::from(*b),
        Property::U64(v) => Variant::from(*v),
        Property::Str(s) => Variant::from(s.as_str()),
        Property::Bytes(b) => Variant::from(b.as_slice()),
        Property::U32s(v) => Variant::from(v.as_slice()),
    }
}

impl Systemd {
    pub fn new() -> Systemd {
        Systemd::default()
    }

    /// Whether systemd runs this machine (its runtime directory exists), as sd_booted(3).
    pub fn booted() -> bool {
        std::path::Path::new("/run/systemd/system").is_dir()
    }

    async fn connection(&self) -> Result<Connection> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        // Bounded like every call: a bus that never answers the handshake (hung, or still
        // starting) fails the CRI call instead of holding it, and every other one queued on this
        // lock, forever.
        let built = zbus::connection::Builder::system()
            .method_timeout(CALL_TIMEOUT)
            .build();
        let conn = tokio::time::timeout(CALL_TIMEOUT, built)
            .await
            .map_err(|_| {
                err(
                    "connecting to the system bus",
                    format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
                )
            })?
            .map_err(|e| err("connecting to the system bus", e))?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Call a method; a broken connection is dropped so the next call connects again.
    async fn call<B>(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
    ) -> Result<zbus::Message, zbus::Error>
    where
        B: serde::Serialize + zbus::DynamicType,
    {
        let conn = self
            .connection()
            .await
            .map_err(|e| zbus::Error::Failure(e.to_string()))?;
        let r = conn
            .call_method(Some(DEST), path, Some(iface), method, body)
            .await;
        if let Err(zbus::Error::InputOutput(_)) = &r {
            *self.conn.lock().await = None;
        }
        r
    }

    /// Start container scope `path` with process `pid` (already in the scope's cgroup, which
    /// berth-shim made) and the container's resources; waits until the unit is active.
    pub async fn start_scope(
        &self,
        path: &SystemdPath,
        pid: u32,
        resources: Option<&LinuxResources>,
        unified: bool,
    ) -> Result<()> {
        let unit = path.unit();
        let props = scope_properties(path, pid, resources, unified)?;
        let body: Vec<(&str, Variant<'_>)> = props.iter().map(|(k, v)| (*k, variant(v))).collect();
        let aux: Vec<(&str, Vec<(&str, Variant<'_>)>)> = Vec::new();
        let reply = self
            .call(
                PATH,
                MANAGER,
                "StartTransientUnit",
                &(unit.as_str(), "replace", body, aux),
            )
            .await
            .map_err(|e| err(&format!("starting {unit}"), e))?;
        let job: OwnedObjectPath = reply
            .body()
            .deserialize()
            .map_err(|e| err(&format!("starting {unit}: the reply"), e))?;
        self.wait_job(&job).await?;
        match self.active_state(&unit).await? {
            Some(s) if s == "active" || s == "activating" => Ok(()),
            s => Err(Error::Systemd(format!(
                "{unit} did not start (state {})",
                s.as_deref().unwrap_or("gone")
            ))),
        }
    }

    /// Apply new resources to a running unit (`SetUnitProperties`, runtime only).
    pub async fn update(&self, unit: &str, r: &LinuxResources, unified: bool) -> Result<()> {
        let props = resource_properties(r, unified)?;
        if props.is_empty() {
            return Ok(());
        }
        let body: Vec<(&str, Variant<'_>)> = props.iter().map(|(k, v)| (*k, variant(v))).collect();
        self.call(PATH, MANAGER, "SetUnitProperties", &(unit, true, body))
            .await
            .map_err(|e| err(&format!("updating {unit}"), e))?;
        Ok(())
    }

    /// Stop a unit and wait for it; a unit systemd no longer has (its processes ended and it
    /// was collected) is already stopped.
    pub async fn stop_unit(&self, unit: &str) -> Result<()> {
        let reply = match self
            .call(PATH, MANAGER, "StopUnit", &(unit, "replace"))
            .await
        {
            Ok(r) => r,
            Err(e) if error_name(&e).as_deref() == Some("org.freedesktop.systemd1.NoSuchUnit") => {
                return Ok(());
            }
            Err(e) => return Err(err(&format!("stopping {unit}"), e)),
        };
        let job: OwnedObjectPath = reply
            .body()
            .deserialize()
            .map_err(|e| err(&format!("stopping {unit}: the reply"), e))?;
        self.wait_job(&job).await?;
        // A failed scope stays loaded until reset; berth is done with it either way.
        if self.active_state(unit).await?.as_deref() == Some("failed") {
            let _ = self.call(PATH, MANAGER, "ResetFailedUnit", &(unit,)).await;
        }
        Ok(())
    }

    /// A unit's `ActiveState`; None if systemd does not have it loaded.
    pub async fn active_state(&self, unit: &str) -> Result<Option<String>> {
        let reply = match self.call(PATH, MANAGER, "GetUnit", &(unit,)).await {
            Ok(r) => r,
            Err(e) if error_name(&e).as_deref() == Some("org.freedesktop.systemd1.NoSuchUnit") => {
                return Ok(None);
            }
            Err(e) => return Err(err(&format!("looking up {unit}"), e)),
        };
        let obj: OwnedObjectPath = reply
            .body()
            .deserialize()
            .map_err(|e| err(&format!("looking up {unit}: the reply"), e))?;
        let state = self
            .get_property(obj.as_str(), "org.freedesktop.systemd1.Unit", "ActiveState")
            .await
            .map_err(|e| err(&format!("reading {unit}'s ActiveState"), e))?;
        Ok(state.and_then(|v| String::try_from(v).ok()))
    }

    /// `org.freedesktop.DBus.Properties.Get`; None if the object is gone.
    async fn get_property(
        &self,
        path: &str,
        iface: &str,
        name: &str,
    ) -> Result<Option<OwnedVariant>, zbus::Error> {
        match self
            .call(
                path,
                "org.freedesktop.DBus.Properties",
                "Get",
                &(iface, name),
            )
            .await
        {
            Ok(r) => Ok(Some(r.body().deserialize()?)),
            Err(e)
                if matches!(
                    error_name(&e).as_deref(),
                    Some(
                        "org.freedesktop.DBus.Error.UnknownObject"
                            | "org.freedesktop.DBus.Error.UnknownMethod"
                            | "org.freedesktop.DBus.Error.UnknownInterface"
                    )
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Wait until systemd is done with a job (its object is gone).
    async fn wait_job(&self, job: &OwnedObjectPath) -> Result<()> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            let state = self
                .get_property(job.as_str(), "org.freedesktop.systemd1.Job", "State")
                .await
                .map_err(|e| err(&format!("waiting for job {}", job.as_str()), e))?;
            if state.is_none() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Systemd(format!(
                    "job {} not done after {}s",
                    job.as_str(),
                    JOB_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
