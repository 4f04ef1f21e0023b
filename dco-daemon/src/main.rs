fn main() {
    eprintln!("dco-daemon: not built yet");
    std::process::exit(1);
}
