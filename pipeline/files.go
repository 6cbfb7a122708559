package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/regfile"
)

// copyModelFiles copies the non-weight files of a model directory (config, tokenizer,
// generation config, ...) into dst.
func copyModelFiles(srcDir, dst string) error {
	ents, err := os.ReadDir(srcDir)
	if err != nil {
		return fmt.Errorf("read model directory: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasSuffix(name, ".safetensors") || name == safetensors.IndexName ||
			name == ReportFile || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".bin") || strings.HasSuffix(name, ".pt") {
			continue
		}
		if err := regfile.Copy(filepath.Join(srcDir, name), filepath.Join(dst, name)); err != nil {
			return err
		}
	}
	return nil
}
