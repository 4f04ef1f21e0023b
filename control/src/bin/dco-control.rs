fn main() {
    eprintln!("dco-control: not built yet");
    std::process::exit(1);
}
