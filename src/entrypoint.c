// Registers the Rust routines with R; the call keeps the static library linked.
void R_init_tabnetrs_extendr(void *dll);

void R_init_tabnetrs(void *dll) {
    R_init_tabnetrs_extendr(dll);
}
