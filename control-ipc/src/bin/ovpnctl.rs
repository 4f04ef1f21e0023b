fn main() {
    eprintln!("ovpnctl: not built yet");
    std::process::exit(1);
}
