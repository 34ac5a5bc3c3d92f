fn main() {
    eprintln!("cargo bench: the bench orchestrator is not built yet (issue 4)");
}
