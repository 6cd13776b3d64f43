/* tokdata.c - lifetime of deepc_tokdata, the plain tokenizer arrays that the
 * converter fills (convert/tok_import.c) and the .dqf format stores. */
#include "tokdata.h"

#include <stdlib.h>
#include <string.h>

void deepc_tokdata_clear(deepc_tokdata *td) {
    if (!td) return;
    free(td->offs);
    free(td->text);
    free(td->flags);
    free(td->merges);
    /* Leave the struct as a valid empty tokdata, so clearing twice is safe. */
    memset(td, 0, sizeof *td);
    td->bos_id = td->eos_id = td->pad_id = -1;
}
