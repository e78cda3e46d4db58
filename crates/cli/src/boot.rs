//! Boot configs beyond the generic object actions: `wulf boot create NAME --from-image IMAGE`
//! (boot/from_image.rs).

pub(crate) mod from_image;
