//! What `wulf image ls -l` adds to each image: the content's size, the parent version's
//! sha256 shortened, and the boot configs that use the image.

use serde_json::Value;

use crate::fail::Fail;

pub(crate) fn annotate(c: &wulf_api::Client, objs: &mut [Value]) -> Result<(), Fail> {
    let boots: Vec<Value> = c.get("/boot?fields=name,image")?;
    for o in objs.iter_mut() {
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let used: Vec<Value> = boots
            .iter()
            .filter(|b| b.get("image").and_then(Value::as_str) == Some(name.as_str()))
            .filter_map(|b| b.get("name").cloned())
            .collect();
        let size = o
            .get("content")
            .and_then(|c| c.get("size"))
            .and_then(Value::as_u64)
            .map(crate::output::human_size);
        let Some(m) = o.as_object_mut() else { continue };
        if let Some(s) = size {
            m.insert("size".into(), Value::String(s));
        }
        if let Some(p) = m.get("parent_sha256").and_then(Value::as_str) {
            let short = p[..p.len().min(12)].to_string();
            m.insert("parent_sha256".into(), Value::String(short));
        }
        m.insert("used_by".into(), Value::Array(used));
    }
    Ok(())
}
