//! `uplink-fuzz TARGET`: runs one of Uplink's fuzz targets (`uplink::fuzz::TARGETS`) under
//! AFL++ in persistent mode. Depends on nothing but the library's `fuzz` module and `afl`.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(run) = uplink::fuzz::target(&name) else {
        let names: Vec<&str> = uplink::fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: uplink-fuzz TARGET, one of: {}", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| run(data));
}
