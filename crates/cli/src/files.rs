//! File fields (boot: kernel, initramfs; image: content): `upload`, `download`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use wulf_api::{client::encode, Client, Deleted, UpdateRequest};
use wulf_model::{field_type, FieldType, Kind};

use crate::args::{Cli, ObjectCmd};
use crate::conn::client;
use crate::fail::{usage, Fail};
use crate::objects::report;
use crate::output;

/// `upload FIELD FILE`
pub(crate) fn upload_cmd(
    cli: &Cli,
    kind: Kind,
    cmd: &ObjectCmd,
    field: &str,
    file: &Path,
) -> Result<(), Fail> {
    if field_type(kind, field) != Some(FieldType::File) {
        return Err(usage(format!(
            "{} has no file field '{field}' (boot: kernel, initramfs; image: content)",
            kind.title()
        )));
    }
    let ids = cmd
        .ids_query(&[])
        .ok_or_else(|| usage("upload needs --ids naming one object"))?;
    let obj = upload(&client(cli)?, kind, &ids, field, file)?;
    report(cli, "Updated", kind, &[obj]);
    Ok(())
}

/// `download FIELD -o FILE`
pub(crate) fn download_cmd(
    cli: &Cli,
    kind: Kind,
    cmd: &ObjectCmd,
    field: &str,
    out: &Path,
) -> Result<(), Fail> {
    let ids = cmd
        .ids_query(&[])
        .ok_or_else(|| usage("download needs --ids naming one object"))?;
    download(&client(cli)?, kind, &ids, field, out)
}

pub(crate) fn upload(
    c: &Client,
    kind: Kind,
    id: &str,
    field: &str,
    path: &Path,
) -> Result<Value, Fail> {
    upload_with(c, kind, id, field, path, "")
}

/// `upload` with more query parameters (`&parent_sha256=…`).
pub(crate) fn upload_with(
    c: &Client,
    kind: Kind,
    id: &str,
    field: &str,
    path: &Path,
    query: &str,
) -> Result<Value, Fail> {
    let file = std::fs::File::open(path)
        .map_err(|e| usage(format!("cannot open {}: {e}", path.display())))?;
    let len = file
        .metadata()
        .map(|m| m.len())
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    // Check first, so a refusal is reported before the whole file is sent (the head answers a
    // refused upload without reading it, which a sender sees as a broken connection).
    let target: Vec<Value> = c.get(&format!("/{kind}?ids={}&fields=name,frozen", encode(id)))?;
    match target.as_slice() {
        [one] if one.get("frozen").and_then(Value::as_bool) == Some(true) => {
            let name = one.get("name").and_then(Value::as_str).unwrap_or(id);
            return Err(Fail::Request(anyhow::anyhow!(
                "{} '{name}' is frozen; set frozen=false first",
                kind.title()
            )));
        }
        [_] => {}
        many => {
            return Err(usage(format!(
                "'{id}' names {} objects; name one",
                many.len()
            )))
        }
    }
    let filename = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let bar = output::bytes_bar(len, &format!("{field} {filename}"));
    let reader = bar.wrap_read(file);
    let objs: Vec<Value> = c.upload(
        &format!(
            "/{kind}/{}/files/{field}?filename={}{query}",
            encode(id),
            encode(&filename)
        ),
        reader,
        len,
    )?;
    bar.finish_and_clear();
    objs.into_iter()
        .next()
        .ok_or_else(|| Fail::Request(anyhow::anyhow!("the head returned no object")))
}

/// Upload `files` to the object `uid` (named `name`) that was just created. If one is
/// refused, the object is deleted again, so that a create with files is all or nothing (a
/// refused upload keeps no file on the head, and with this no object either).
pub(crate) fn upload_to_new(
    c: &Client,
    kind: Kind,
    uid: &str,
    name: &str,
    files: &[(String, PathBuf)],
) -> Result<Option<Value>, Fail> {
    let mut last = None;
    for (field, path) in files {
        match upload(c, kind, uid, field, path) {
            Ok(obj) => last = Some(obj),
            Err(Fail::Request(e)) => {
                let undone = c.delete::<Deleted>(&format!("/{kind}?ids={}", encode(uid)));
                return Err(Fail::Request(match undone {
                    Ok(_) => e.context(format!(
                        "{field} of the new {} '{name}' was refused; it was deleted again",
                        kind.title()
                    )),
                    Err(d) => e.context(format!(
                        "{field} of the new {} '{name}' was refused, and deleting it again \
                         failed ({d}): delete it with `wulf {kind} -i {name} delete`",
                        kind.title()
                    )),
                }));
            }
            Err(usage) => return Err(usage),
        }
    }
    Ok(last)
}

/// Check that the head would take `req` for the objects `query` selects, writing nothing (a
/// dry run of the same change through `POST /cluster/import`), so that an update with fields
/// and files is refused before any file is sent, and no file is stored for fields that are
/// refused.
pub(crate) fn check_update(
    c: &Client,
    kind: Kind,
    query: &str,
    req: &UpdateRequest,
) -> Result<(), Fail> {
    let objs: Vec<Value> = c.get(&format!("/{kind}{query}&fields=uid"))?;
    let uids: Vec<&str> = objs
        .iter()
        .filter_map(|o| o.get("uid").and_then(Value::as_str))
        .collect();
    let body = serde_json::json!({
        "steps": [{"update": kind.to_string(), "uids": uids, "request": req}],
        "dry_run": true,
    });
    let _: Value = c.send("POST", "/cluster/import", &body)?;
    Ok(())
}

pub(crate) fn download(
    c: &Client,
    kind: Kind,
    id: &str,
    field: &str,
    out: &Path,
) -> Result<(), Fail> {
    let (len, reader) = c.download(&format!("/{kind}/{}/files/{field}", encode(id)))?;
    if out.as_os_str() == "-" {
        let mut r = reader;
        std::io::copy(&mut r, &mut std::io::stdout().lock())
            .map_err(|e| Fail::Request(anyhow::anyhow!("download failed: {e}")))?;
        return Ok(());
    }
    let tmp = out.with_extension("part");
    let mut f = std::fs::File::create(&tmp)
        .map_err(|e| usage(format!("cannot create {}: {e}", tmp.display())))?;
    let bar = output::bytes_bar(len.unwrap_or(0), &format!("{field} → {}", out.display()));
    let mut r = bar.wrap_read(reader);
    let copied = std::io::copy(&mut r, &mut f);
    bar.finish_and_clear();
    match copied {
        Ok(n) if len.is_none_or(|l| l == n) => {
            std::fs::rename(&tmp, out).map_err(|e| {
                Fail::Request(anyhow::anyhow!("cannot write {}: {e}", out.display()))
            })?;
            eprintln!("wrote {n} bytes to {}", out.display());
            Ok(())
        }
        Ok(n) => {
            let _ = std::fs::remove_file(&tmp);
            Err(Fail::Request(anyhow::anyhow!(
                "download ended after {n} of {} bytes",
                len.unwrap_or(0)
            )))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(Fail::Request(anyhow::anyhow!("download failed: {e}")))
        }
    }
}
