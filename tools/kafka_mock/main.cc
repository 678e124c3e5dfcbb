int main() { return 1; }  // placeholder: mock broker host (being written)
